//! A config value that is a number, or a uniform range drawn from per client.

use serde::de::{self, MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};

/// A number, or a uniform range `{min: a, max: b}` drawn from per client.
#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
#[serde(untagged)]
pub enum Range {
    Fixed(f64),
    Uniform { min: f64, max: f64 },
}

/// What a range accepts, as its errors say it (after the field's unit, which the config adds).
pub const EXPECTED: &str = "a number or {min, max}";

/// By hand rather than `untagged`: an untagged enum's error names neither the field nor what
/// was wrong ("data did not match any variant"); this one says what it got, and the YAML
/// parser adds the field's path and line.
impl<'de> Deserialize<'de> for Range {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Range, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Range;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str(EXPECTED)
            }
            fn visit_f64<E: de::Error>(self, x: f64) -> Result<Range, E> {
                Ok(Range::Fixed(x))
            }
            fn visit_i64<E: de::Error>(self, x: i64) -> Result<Range, E> {
                Ok(Range::Fixed(x as f64))
            }
            fn visit_u64<E: de::Error>(self, x: u64) -> Result<Range, E> {
                Ok(Range::Fixed(x as f64))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Range, A::Error> {
                let (mut min, mut max) = (None, None);
                while let Some(k) = m.next_key::<String>()? {
                    match k.as_str() {
                        "min" => min = Some(m.next_value::<f64>()?),
                        "max" => max = Some(m.next_value::<f64>()?),
                        other => return Err(de::Error::unknown_field(other, &["min", "max"])),
                    }
                }
                match (min, max) {
                    (Some(min), Some(max)) => Ok(Range::Uniform { min, max }),
                    (None, _) => Err(de::Error::missing_field("min")),
                    (_, None) => Err(de::Error::missing_field("max")),
                }
            }
        }
        d.deserialize_any(V)
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_number_or_a_range_and_nothing_else() {
        let r: Range = serde_yaml::from_str("20").unwrap();
        assert_eq!(r, Range::Fixed(20.0));
        let r: Range = serde_yaml::from_str("2.5").unwrap();
        assert_eq!(r, Range::Fixed(2.5));
        let r: Range = serde_yaml::from_str("{min: 1, max: 3}").unwrap();
        assert_eq!(r, Range::Uniform { min: 1.0, max: 3.0 });
        let e = serde_yaml::from_str::<Range>("fast")
            .unwrap_err()
            .to_string();
        assert!(e.contains("\"fast\"") && e.contains(EXPECTED), "{e}");
        let e = serde_yaml::from_str::<Range>("{min: 1}")
            .unwrap_err()
            .to_string();
        assert!(e.contains("max"), "{e}");
        let e = serde_yaml::from_str::<Range>("{min: 1, max: 2, mean: 3}")
            .unwrap_err()
            .to_string();
        assert!(e.contains("mean"), "{e}");
    }
}
