//! The laterality check: does the optic disc sit where the stated eye puts it?
//!
//! In a macula-centred fundus photograph the disc is nasal to the fovea: as displayed
//! (not mirrored), it is right of the field's centre in a right eye (OD) and left of it
//! in a left eye (OS). The disc estimate comes from `preprocess::disc`; this module
//! decides, and only when the evidence is clear: an ungradable image, a weak spot or one
//! near the centre (a disc-centred view) is `undetermined`, never a guess. Nothing is
//! swapped: the stated eye stays the eye of record and a contradiction is a warning for
//! the clinician to check.

use serde::{Deserialize, Serialize};

use super::Laterality;
use crate::preprocess::disc::DiscEstimate;

/// The spot must stand out from the retina around it by this many standard deviations of
/// the field's brightness. Fixture discs score 2.7-5.5; an eyelid shadow's lit side or an
/// underexposed field score 1.0-1.6.
pub const MIN_CONTRAST: f32 = 2.0;
/// ... and by this many luma levels, so a nearly black image's noise cannot pass.
pub const MIN_STEP: f32 = 12.0;
/// The spot must be at least this far from the centre, in field radii: macula-centred
/// discs sit at 0.5-0.85; nearer the centre the view is disc-centred or the spot is not
/// the disc.
pub const MIN_OFFSET: f32 = 0.3;

/// The check's conclusion.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LateralityVerdict {
    /// The disc is on the stated eye's nasal side.
    Consistent,
    /// The disc is on the other side: the image may be of the other eye (or mirrored).
    Contradicts,
    /// No clear disc, an ungradable image, or no eye stated.
    Undetermined,
}

/// Which side of the displayed image the disc is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ImageSide {
    Left,
    Right,
}

/// The laterality check of one image, as it appears in the image's finding.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LateralityCheck {
    /// The eye the image was sent as (unchanged by the check).
    pub stated: Laterality,
    /// Where the disc was found, when it was found clearly.
    pub disc_side: Option<ImageSide>,
    /// The eye that disc position suggests, when it was found clearly.
    pub suggested: Option<Laterality>,
    pub verdict: LateralityVerdict,
    /// The spot's horizontal offset from the field's centre in field radii (positive to
    /// the right as displayed), two decimals; absent when nothing was measured.
    pub offset: Option<f32>,
    /// How clearly the spot stands out (see [`MIN_CONTRAST`]), two decimals.
    pub contrast: Option<f32>,
}

fn two_decimals(x: f32) -> f32 {
    (x * 100.0).round() / 100.0
}

/// Decides the check for an image sent as `stated`, with the disc estimate of its
/// prepared field and whether the image was gradable.
pub fn check(stated: Laterality, disc: Option<&DiscEstimate>, gradable: bool) -> LateralityCheck {
    let clear = disc.filter(|d| gradable && d.contrast >= MIN_CONTRAST && d.step >= MIN_STEP && d.offset_x.abs() >= MIN_OFFSET);
    let disc_side = clear.map(|d| if d.offset_x > 0.0 { ImageSide::Right } else { ImageSide::Left });
    // The disc is nasal: on the right as displayed in a right eye.
    let suggested = disc_side.map(|s| if s == ImageSide::Right { Laterality::Right } else { Laterality::Left });
    let verdict = match (suggested, stated) {
        (_, Laterality::Unspecified) | (None, _) => LateralityVerdict::Undetermined,
        (Some(s), stated) if s == stated => LateralityVerdict::Consistent,
        (Some(_), _) => LateralityVerdict::Contradicts,
    };
    LateralityCheck {
        stated,
        disc_side,
        suggested,
        verdict,
        offset: disc.map(|d| two_decimals(d.offset_x)),
        contrast: disc.map(|d| two_decimals(d.contrast)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::preprocess::disc;

    /// The prepared 512x512 image of a fixture, as the recipe's reference implementation
    /// wrote it (the Rust preprocessing matches it within 1 per channel).
    fn reference(stem: &str) -> Vec<u8> {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/reference").join(format!("{stem}.png"));
        image::open(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())).to_rgb8().into_raw()
    }

    fn mirrored(rgb: &[u8]) -> Vec<u8> {
        rgb.chunks_exact(512 * 3).flat_map(|row| row.chunks_exact(3).rev().flatten().copied().collect::<Vec<u8>>()).collect()
    }

    fn labels() -> Vec<(String, Laterality, bool)> {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/labels.csv");
        let text = std::fs::read_to_string(path).unwrap();
        text.lines()
            .skip(1)
            .map(|line| {
                let cols: Vec<&str> = line.split(',').collect();
                let stem = cols[0].rsplit_once('.').unwrap().0.to_string();
                (stem, Laterality::parse(cols[4]).unwrap(), cols[3] == "1")
            })
            .collect()
    }

    #[test]
    fn every_gradable_fixture_is_consistent_and_its_mirror_contradicts() {
        let mut checked = 0;
        for (stem, stated, gradable) in labels().into_iter().filter(|l| l.2) {
            let rgb = reference(&stem);
            let c = check(stated, disc::locate(512, &rgb).as_ref(), gradable);
            assert_eq!(c.verdict, LateralityVerdict::Consistent, "{stem}: {c:?}");
            assert_eq!(c.suggested, Some(stated), "{stem}");
            let m = check(stated, disc::locate(512, &mirrored(&rgb)).as_ref(), gradable);
            assert_eq!(m.verdict, LateralityVerdict::Contradicts, "{stem} mirrored: {m:?}");
            assert_eq!(m.stated, stated, "the stated eye is never swapped");
            checked += 1;
        }
        assert_eq!(checked, 11, "the gradable fixtures in labels.csv");
    }

    #[test]
    fn the_real_photograph_is_a_left_eye() {
        // fixtures/README.md: scikit-image's CC0 photograph of a normal left eye; its disc
        // is left of centre as displayed.
        for stem in ["retina_skimage", "retina_skimage_mild", "retina_skimage_moderate", "retina_skimage_severe"] {
            let c = check(Laterality::Left, disc::locate(512, &reference(stem)).as_ref(), true);
            assert_eq!((c.verdict, c.disc_side), (LateralityVerdict::Consistent, Some(ImageSide::Left)), "{stem}: {c:?}");
            let sent_as_right = check(Laterality::Right, disc::locate(512, &reference(stem)).as_ref(), true);
            assert_eq!(sent_as_right.verdict, LateralityVerdict::Contradicts, "{stem}");
        }
    }

    #[test]
    fn ungradable_fixtures_are_undetermined_even_if_their_measures_were_believed() {
        for (stem, stated, gradable) in labels().into_iter().filter(|l| !l.2) {
            let estimate = disc::locate(512, &reference(&stem));
            assert_eq!(check(stated, estimate.as_ref(), gradable).verdict, LateralityVerdict::Undetermined, "{stem}");
        }
        // On the disc evidence alone (as if gradable), the dark, clipped and eyelid images
        // still give no clear disc: the check does not lean on the gradability gate alone.
        for (stem, stated) in
            [("ungradable_dark_R", Laterality::Right), ("ungradable_clipped_R", Laterality::Right), ("ungradable_lid_L", Laterality::Left)]
        {
            let c = check(stated, disc::locate(512, &reference(stem)).as_ref(), true);
            assert_eq!((c.verdict, c.disc_side), (LateralityVerdict::Undetermined, None), "{stem}: {c:?}");
        }
        let black = vec![0u8; 512 * 512 * 3];
        assert_eq!(check(Laterality::Right, disc::locate(512, &black).as_ref(), true).verdict, LateralityVerdict::Undetermined);
    }

    #[test]
    fn thresholds_and_unstated_eyes() {
        let spot = |offset_x: f32, contrast: f32, step: f32| DiscEstimate { offset_x, offset_y: 0.0, contrast, step };
        let verdict = |stated, d: DiscEstimate| check(stated, Some(&d), true).verdict;
        assert_eq!(verdict(Laterality::Right, spot(0.6, 3.0, 40.0)), LateralityVerdict::Consistent);
        assert_eq!(verdict(Laterality::Left, spot(0.6, 3.0, 40.0)), LateralityVerdict::Contradicts);
        assert_eq!(verdict(Laterality::Left, spot(-0.6, 3.0, 40.0)), LateralityVerdict::Consistent);
        // Near the centre (a disc-centred view), weak, or a tiny step: no verdict.
        assert_eq!(verdict(Laterality::Left, spot(0.2, 3.0, 40.0)), LateralityVerdict::Undetermined);
        assert_eq!(verdict(Laterality::Left, spot(0.6, 1.5, 40.0)), LateralityVerdict::Undetermined);
        assert_eq!(verdict(Laterality::Left, spot(0.6, 3.0, 5.0)), LateralityVerdict::Undetermined);
        // No eye stated: the suggestion is reported, the verdict is not a contradiction.
        let c = check(Laterality::Unspecified, Some(&spot(0.6, 3.0, 40.0)), true);
        assert_eq!((c.verdict, c.suggested), (LateralityVerdict::Undetermined, Some(Laterality::Right)));
        assert_eq!(check(Laterality::Right, None, true).offset, None);
    }
}
