//! Deterministic mutations for the smoke runs of the fuzz targets (`tests/fuzz_smoke.rs`,
//! `tests/dicom_mutations.rs`): bit flips, 0xFF runs, truncation, duplicated ranges and
//! undefined-length headers, from a seeded xorshift so a failure names its round and
//! reproduces.

/// xorshift64*: deterministic, so a failure names its iteration and reproduces.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// One to four mutations of `input`.
pub fn mutate(input: &[u8], rng: &mut Rng) -> Vec<u8> {
    let mut out = input.to_vec();
    for _ in 0..1 + rng.below(4) {
        if out.is_empty() {
            break;
        }
        let at = rng.below(out.len());
        match rng.below(6) {
            0 => out[at] ^= 1 << rng.below(8),
            1 => {
                let end = (at + 4).min(out.len());
                out[at..end].iter_mut().for_each(|b| *b = 0xFF);
            }
            2 => out.truncate(at),
            3 => {
                let end = (at + 1 + rng.below(64)).min(out.len());
                let chunk = out[at..end].to_vec();
                let to = rng.below(out.len());
                out.splice(to..to, chunk);
            }
            4 => out[at] = rng.next() as u8,
            _ => {
                // An item or sequence header claiming an undefined length.
                let header = [0xFE, 0xFF, 0x00, 0xE0, 0xFF, 0xFF, 0xFF, 0xFF];
                out.splice(at..at, header);
            }
        }
    }
    out
}
