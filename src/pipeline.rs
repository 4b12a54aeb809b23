//! The one entry point edges use: an [`Engine`] plus the site's [`GradingPolicy`],
//! turning encoded images into image findings and exam results.

use crate::engine::{Engine, EngineError, Scored, Ticket};
use crate::grading::{self, ExamResult, GradingPolicy, ImageFinding, Laterality};

/// Engine + policy.
#[derive(Clone)]
pub struct Screener {
    pub engine: Engine,
    pub policy: GradingPolicy,
}

impl Screener {
    pub fn new(engine: Engine, policy: GradingPolicy) -> Self {
        Self { engine, policy }
    }

    /// Admits one image; see [`Engine::submit`].
    pub fn submit(&self, bytes: impl AsRef<[u8]> + Send + 'static) -> Result<Ticket, EngineError> {
        self.engine.submit(bytes)
    }

    /// Turns a scored image into its finding under this policy.
    pub fn finding(&self, scored: &Scored, laterality: Laterality, source: Option<String>) -> ImageFinding {
        let model = &self.engine.model();
        grading::grade_image(scored, &self.policy, &model.identity, &model.manifest.input.recipe, laterality, source)
    }

    /// Grades one image synchronously.
    pub fn grade_blocking(
        &self,
        bytes: impl AsRef<[u8]> + Send + 'static,
        laterality: Laterality,
        source: Option<String>,
    ) -> Result<ImageFinding, EngineError> {
        let scored = self.engine.score_blocking(bytes)?;
        Ok(self.finding(&scored, laterality, source))
    }

    /// Aggregates findings into an exam result.
    pub fn exam(&self, images: Vec<ImageFinding>) -> ExamResult {
        grading::grade_exam(images, &self.policy, &self.engine.model().identity)
    }
}
