//! Stored roll-ups: per minute and per hour, the minimum, maximum, sum,
//! count, first and last value of a series, kept in blocks of their own
//! (pseudo-series `field#1m:min`, …, beside the raw ones) with their own
//! retention, so a series answers at those steps after its raw points are
//! gone. A raw block's roll-ups are recomputed whole whenever the block is
//! written, from the block as merged; points that come late, after their
//! raw block was removed, are folded into the stored roll-ups.

use super::window::Aggregate;
use super::{Point, block};
use crate::twin::Micros;

/// A roll-up tier: its name in pseudo-series and its step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tier {
    pub name: &'static str,
    pub step: Micros,
}

pub const MINUTE: Tier = Tier {
    name: "1m",
    step: 60_000_000,
};
pub const HOUR: Tier = Tier {
    name: "1h",
    step: 3_600_000_000,
};
pub const TIERS: [Tier; 2] = [MINUTE, HOUR];

/// What a tier keeps of each of its buckets.
pub const STATS: [&str; 6] = ["min", "max", "sum", "count", "first", "last"];

/// The pseudo-series of `stat` of `field` in `tier`.
pub fn field_of(field: &str, tier: Tier, stat: &str) -> String {
    format!("{field}#{}:{stat}", tier.name)
}

/// The tier a (pseudo-)series belongs to; `None` for a raw one. Field
/// names (DTDL names, `component.field`) never hold a `#`.
pub fn tier_of(field: &str) -> Option<Tier> {
    let (_, rest) = field.split_once('#')?;
    let (name, _) = rest.split_once(':')?;
    TIERS.into_iter().find(|t| t.name == name)
}

/// Folds the roll-up points `late` of `stat` (one tier's, in time order)
/// into `stored` (the same, of points whose raw block is gone): a bucket
/// both have is combined (the least minimum, the greatest maximum, sums
/// and counts added; the first and last value stay as stored, since the
/// raw points that would order them are gone), the others are added.
pub fn fold(stat: &str, stored: Vec<Point>, late: &[Point]) -> Vec<Point> {
    let combine = |a: f64, b: f64| match stat {
        "min" => a.min(b),
        "max" => a.max(b),
        "sum" | "count" => a + b,
        _ => a,
    };
    let mut out = Vec::with_capacity(stored.len() + late.len());
    let mut late = late.iter().peekable();
    for p in stored {
        while let Some(l) = late.next_if(|l| l.time < p.time) {
            out.push(*l);
        }
        match late.next_if(|l| l.time == p.time) {
            Some(l) => out.push(Point {
                time: p.time,
                value: combine(p.value, l.value),
            }),
            None => out.push(p),
        }
    }
    out.extend(late.copied());
    out
}

/// The roll-ups of one raw block's points (in time order), per tier: the
/// pseudo-series name suffix (`#1m:min`, …) and its points.
pub fn of_block(points: &[Point]) -> Vec<(Tier, &'static str, Vec<Point>)> {
    let mut out = Vec::new();
    for tier in TIERS {
        let mut stats: [Vec<Point>; 6] = Default::default();
        let mut start = 0;
        while start < points.len() {
            let bucket = block::bucket_of(points[start].time, tier.step);
            let end = start
                + points[start..]
                    .iter()
                    .position(|p| p.time >= bucket + tier.step)
                    .unwrap_or(points.len() - start);
            let run = &points[start..end];
            let values = [
                run.iter().map(|p| p.value).fold(f64::INFINITY, f64::min),
                run.iter()
                    .map(|p| p.value)
                    .fold(f64::NEG_INFINITY, f64::max),
                run.iter().map(|p| p.value).sum(),
                run.len() as f64,
                run[0].value,
                run[run.len() - 1].value,
            ];
            for (s, v) in stats.iter_mut().zip(values) {
                s.push(Point {
                    time: bucket,
                    value: v,
                });
            }
            start = end;
        }
        for (stat, points) in STATS.into_iter().zip(stats) {
            out.push((tier, stat, points));
        }
    }
    out
}

/// The answer of `aggregate` per `step` (a multiple of the tier's step)
/// from a tier's stats (each in time order, one point per tier bucket, in
/// the order of [`STATS`]).
pub fn apply(stats: &[Vec<Point>; 6], step: Micros, aggregate: Aggregate) -> Vec<Point> {
    let [min, max, sum, count, first, last] = stats;
    let mut out: Vec<Point> = Vec::new();
    let mut i = 0;
    let n = count.len();
    while i < n {
        let bucket = block::bucket_of(count[i].time, step);
        let end = i + count[i..]
            .iter()
            .position(|p| p.time >= bucket + step)
            .unwrap_or(n - i);
        let range = i..end;
        let value = |s: &Vec<Point>, r: std::ops::Range<usize>| -> Vec<f64> {
            s.get(r)
                .map_or_else(Vec::new, |p| p.iter().map(|p| p.value).collect())
        };
        let v = match aggregate {
            Aggregate::Min => value(min, range).into_iter().fold(f64::INFINITY, f64::min),
            Aggregate::Max => value(max, range)
                .into_iter()
                .fold(f64::NEG_INFINITY, f64::max),
            Aggregate::Sum => value(sum, range).into_iter().sum(),
            Aggregate::Count => value(count, range).into_iter().sum(),
            Aggregate::Mean => {
                let c: f64 = value(count, range.clone()).into_iter().sum();
                value(sum, range).into_iter().sum::<f64>() / c
            }
            Aggregate::First => value(first, i..i + 1).first().copied().unwrap_or(f64::NAN),
            Aggregate::Last => value(last, end - 1..end)
                .first()
                .copied()
                .unwrap_or(f64::NAN),
        };
        if v.is_finite() {
            out.push(Point {
                time: bucket,
                value: v,
            });
        }
        i = end;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::series::window::Window;

    #[test]
    fn roll_ups_answer_what_the_raw_points_answer_at_their_steps() {
        // Two hours of 7-second points with a wobble.
        let points: Vec<Point> = (0..1000)
            .map(|i| Point {
                time: i * 7_000_000,
                value: (i % 13) as f64 * 0.5 - (i % 7) as f64,
            })
            .collect();
        let mut tiers: Vec<(Tier, [Vec<Point>; 6])> =
            TIERS.into_iter().map(|t| (t, Default::default())).collect();
        // Roll-ups per raw block (hour), as the backend computes them.
        for hour in points.chunk_by(|a, b| a.time / HOUR.step == b.time / HOUR.step) {
            for (tier, stat, pts) in of_block(hour) {
                let at = STATS.iter().position(|s| *s == stat).expect("a stat");
                let (_, stats) = tiers.iter_mut().find(|(t, _)| *t == tier).expect("tier");
                stats[at].extend(pts);
            }
        }
        for (tier, stats) in &tiers {
            for step in [tier.step, tier.step * 2, 3_600_000_000] {
                for aggregate in Aggregate::ALL {
                    let raw = Window {
                        from: 0,
                        to: 7_000_000_000,
                        step: Some(step),
                        aggregate,
                    }
                    .apply(&points)
                    .expect("raw");
                    let rolled = apply(stats, step, aggregate);
                    assert_eq!(raw.len(), rolled.len(), "{tier:?} {step} {aggregate:?}");
                    for (a, b) in raw.iter().zip(&rolled) {
                        assert_eq!(a.time, b.time);
                        assert!(
                            (a.value - b.value).abs() < 1e-9,
                            "{tier:?} {step} {aggregate:?}: {} vs {}",
                            a.value,
                            b.value
                        );
                    }
                }
            }
        }
        assert_eq!(tier_of("flowRate#1m:min"), Some(MINUTE));
        assert_eq!(tier_of("drive.current#1h:last"), Some(HOUR));
        assert_eq!(tier_of("flowRate"), None);
        assert_eq!(field_of("flowRate", HOUR, "sum"), "flowRate#1h:sum");
    }
}
