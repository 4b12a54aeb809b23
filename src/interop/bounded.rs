//! A DICOM decoder that never allocates more than the data holds. dicom-rs allocates a
//! value's claimed length before reading it, so an element header claiming 4 GB in a 5 KB
//! object costs 4 GB and seconds before the read fails. The nesting pre-scan refuses such
//! claims where it reads headers as dicom-rs does, but a pre-scan can drift from the
//! parser (unknown VRs, odd lengths, non-item tags in the item group: each found by
//! fuzzing). This wrapper cannot drift: it sits inside dicom-rs's own reader, sees each
//! length dicom-rs is about to read, and asks for at most the bytes left plus one value,
//! so an over-long claim still fails with dicom-rs's own "could not read value" error
//! after allocating no more than the input's size.

use dicom_core::header::{DataElementHeader, HasLength, Header, Length, SequenceItemHeader};
use dicom_core::value::PrimitiveValue;
use dicom_parser::stateful::decode::{Result, StatefulDecode};

/// Slack above the bytes left: the widest value (8 bytes), so a capped read of any VR
/// still asks for more than remains and fails.
const SLACK: u64 = 8;

/// Wraps a decoder over `total` bytes of data set.
pub struct Bounded<S> {
    inner: S,
    total: u64,
}

impl<S: StatefulDecode> Bounded<S> {
    pub fn new(inner: S, total: u64) -> Self {
        Self { inner, total }
    }

    /// The length to read for a claim of `length`: the claim itself while the data can
    /// hold it, otherwise just over what is left.
    fn cap(&self, length: u32) -> u32 {
        let most = self.total.saturating_sub(self.inner.position()).saturating_add(SLACK);
        if u64::from(length) > most { u32::try_from(most).unwrap_or(u32::MAX) } else { length }
    }

    fn capped(&self, header: &DataElementHeader) -> DataElementHeader {
        match header.length().get() {
            Some(length) if self.cap(length) != length => DataElementHeader::new(header.tag(), header.vr(), Length(self.cap(length))),
            _ => *header,
        }
    }
}

impl<S: StatefulDecode> StatefulDecode for Bounded<S> {
    type Reader = S::Reader;

    fn decode_header(&mut self) -> Result<DataElementHeader> {
        self.inner.decode_header()
    }

    fn decode_item_header(&mut self) -> Result<SequenceItemHeader> {
        self.inner.decode_item_header()
    }

    fn read_value(&mut self, header: &DataElementHeader) -> Result<PrimitiveValue> {
        let header = self.capped(header);
        self.inner.read_value(&header)
    }

    fn read_value_preserved(&mut self, header: &DataElementHeader) -> Result<PrimitiveValue> {
        let header = self.capped(header);
        self.inner.read_value_preserved(&header)
    }

    fn read_value_bytes(&mut self, header: &DataElementHeader) -> Result<PrimitiveValue> {
        let header = self.capped(header);
        self.inner.read_value_bytes(&header)
    }

    fn read_to_vec(&mut self, length: u32, vec: &mut Vec<u8>) -> Result<()> {
        let length = self.cap(length);
        self.inner.read_to_vec(length, vec)
    }

    fn read_u32_to_vec(&mut self, length: u32, vec: &mut Vec<u32>) -> Result<()> {
        let length = self.cap(length);
        self.inner.read_u32_to_vec(length, vec)
    }

    fn read_to<W>(&mut self, length: u32, out: W) -> Result<()>
    where
        Self: Sized,
        W: std::io::Write,
    {
        let length = self.cap(length);
        self.inner.read_to(length, out)
    }

    fn skip_bytes(&mut self, length: u32) -> Result<()> {
        self.inner.skip_bytes(length)
    }

    fn seek(&mut self, position: u64) -> Result<()>
    where
        Self::Reader: std::io::Seek,
    {
        self.inner.seek(position)
    }

    fn position(&self) -> u64 {
        self.inner.position()
    }
}
