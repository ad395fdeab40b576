//! A config value that is a number, or a uniform range drawn from per client.

use serde::{Deserialize, Serialize};

/// A number, or a uniform range `{min: a, max: b}` drawn from per client.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq)]
#[serde(untagged)]
pub enum Range {
    Fixed(f64),
    Uniform { min: f64, max: f64 },
}

impl Range {
    pub fn bounds(&self) -> (f64, f64) {
        match *self {
            Range::Fixed(x) => (x, x),
            Range::Uniform { min, max } => (min, max),
        }
    }
    pub fn draw(&self, rng: &mut impl rand::Rng) -> f64 {
        let (a, b) = self.bounds();
        if b > a {
            rng.random_range(a..=b)
        } else {
            a
        }
    }
    pub fn check(&self, field: &str, lo: f64, hi: f64) -> Result<(), String> {
        let (a, b) = self.bounds();
        if !(a.is_finite() && b.is_finite()) || a < lo || b > hi || a > b {
            return Err(format!(
                "{field}: {a}..{b} must satisfy {lo} <= min <= max <= {hi}"
            ));
        }
        Ok(())
    }
}
