//! Downsampling: the points of a time range in buckets of a step, each
//! bucket one point (its start, and an aggregate of its values).

use super::{Point, SeriesError};
use crate::twin::Micros;

/// How a bucket's values become one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Aggregate {
    Mean,
    Min,
    Max,
    Sum,
    Count,
    First,
    Last,
}

impl Aggregate {
    pub const ALL: [Aggregate; 7] = [
        Aggregate::Mean,
        Aggregate::Min,
        Aggregate::Max,
        Aggregate::Sum,
        Aggregate::Count,
        Aggregate::First,
        Aggregate::Last,
    ];

    /// The name clients use (GraphQL enum value).
    pub fn name(self) -> &'static str {
        match self {
            Aggregate::Mean => "MEAN",
            Aggregate::Min => "MIN",
            Aggregate::Max => "MAX",
            Aggregate::Sum => "SUM",
            Aggregate::Count => "COUNT",
            Aggregate::First => "FIRST",
            Aggregate::Last => "LAST",
        }
    }

    pub fn parse(name: &str) -> Option<Aggregate> {
        Aggregate::ALL.into_iter().find(|a| a.name() == name)
    }

    pub fn describe(self) -> &'static str {
        match self {
            Aggregate::Mean => "The arithmetic mean of the bucket's values.",
            Aggregate::Min => "The smallest value.",
            Aggregate::Max => "The largest value.",
            Aggregate::Sum => "The sum of the values.",
            Aggregate::Count => "How many values the bucket holds.",
            Aggregate::First => "The earliest value.",
            Aggregate::Last => "The latest value.",
        }
    }
}

/// What a query asks of a series: points with `from <= time < to`, raw
/// or one per `step` (buckets aligned to multiples of the step since the
/// epoch, so a chart refreshed later shows the same buckets).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub from: Micros,
    pub to: Micros,
    pub step: Option<Micros>,
    pub aggregate: Aggregate,
}

/// At most this many points in one answer (raw, or buckets).
pub const MAX_POINTS: usize = 100_000;

impl Window {
    /// Checks the window's bounds and size before anything is read.
    pub fn check(&self) -> Result<(), SeriesError> {
        if self.to <= self.from {
            return Err(SeriesError::Window(
                "`to` must be later than `from`".to_owned(),
            ));
        }
        if let Some(step) = self.step {
            if step <= 0 {
                return Err(SeriesError::Window("`step` must be positive".to_owned()));
            }
            let buckets = (self.to - self.from) / step;
            if buckets > MAX_POINTS as i64 {
                return Err(SeriesError::Window(format!(
                    "{buckets} buckets asked; at most {MAX_POINTS}: take a larger step or a shorter range"
                )));
            }
        }
        Ok(())
    }

    /// The answer from `points` (in time order, all within the window).
    pub fn apply(&self, points: &[Point]) -> Result<Vec<Point>, SeriesError> {
        let Some(step) = self.step else {
            if points.len() > MAX_POINTS {
                return Err(SeriesError::Window(format!(
                    "{} points in the range; at most {MAX_POINTS} raw: ask for a `step`",
                    points.len()
                )));
            }
            return Ok(points.to_vec());
        };
        let mut out: Vec<Point> = Vec::new();
        let mut start = 0;
        while start < points.len() {
            let bucket = super::block::bucket_of(points[start].time, step);
            let end = start
                + points[start..]
                    .iter()
                    .position(|p| p.time >= bucket + step)
                    .unwrap_or(points.len() - start);
            let values = points[start..end].iter().map(|p| p.value);
            let value = match self.aggregate {
                Aggregate::Mean => values.sum::<f64>() / (end - start) as f64,
                Aggregate::Min => values.fold(f64::INFINITY, f64::min),
                Aggregate::Max => values.fold(f64::NEG_INFINITY, f64::max),
                Aggregate::Sum => values.sum(),
                Aggregate::Count => (end - start) as f64,
                Aggregate::First => points[start].value,
                Aggregate::Last => points[end - 1].value,
            };
            out.push(Point {
                time: bucket,
                value,
            });
            start = end;
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window(step: Option<Micros>, aggregate: Aggregate) -> Window {
        Window {
            from: 0,
            to: 100,
            step,
            aggregate,
        }
    }

    #[test]
    fn buckets_are_aligned_to_the_step_and_empty_ones_left_out() {
        let points: Vec<Point> = [(1, 1.0), (4, 3.0), (12, 5.0), (31, 7.0), (39, 9.0)]
            .into_iter()
            .map(|(time, value)| Point { time, value })
            .collect();
        let got = |a| {
            window(Some(10), a)
                .apply(&points)
                .expect("apply")
                .into_iter()
                .map(|p| (p.time, p.value))
                .collect::<Vec<_>>()
        };
        assert_eq!(got(Aggregate::Mean), [(0, 2.0), (10, 5.0), (30, 8.0)]);
        assert_eq!(got(Aggregate::Min), [(0, 1.0), (10, 5.0), (30, 7.0)]);
        assert_eq!(got(Aggregate::Max), [(0, 3.0), (10, 5.0), (30, 9.0)]);
        assert_eq!(got(Aggregate::Sum), [(0, 4.0), (10, 5.0), (30, 16.0)]);
        assert_eq!(got(Aggregate::Count), [(0, 2.0), (10, 1.0), (30, 2.0)]);
        assert_eq!(got(Aggregate::First), [(0, 1.0), (10, 5.0), (30, 7.0)]);
        assert_eq!(got(Aggregate::Last), [(0, 3.0), (10, 5.0), (30, 9.0)]);
        assert_eq!(
            window(None, Aggregate::Mean).apply(&points).expect("raw"),
            points
        );
    }

    #[test]
    fn bad_windows_are_refused_before_reading() {
        let w = |from, to, step| Window {
            from,
            to,
            step,
            aggregate: Aggregate::Mean,
        };
        assert!(w(10, 10, None).check().is_err());
        assert!(w(0, 10, Some(0)).check().is_err());
        assert!(w(0, 10, Some(-1)).check().is_err());
        assert!(w(0, 1_000_000_000, Some(1)).check().is_err());
        assert!(w(0, 86_400_000_000, Some(60_000_000)).check().is_ok());
    }

    #[test]
    fn aggregates_have_stable_names() {
        for a in Aggregate::ALL {
            assert_eq!(Aggregate::parse(a.name()), Some(a));
        }
        assert_eq!(Aggregate::parse("mean"), None);
    }
}
