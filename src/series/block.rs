//! A block: the points of one series in one bucket of time, compressed
//! with pco (Pcodec), which is made for numeric columns: timestamps
//! (nearly regular, so their deltas cost a few bits) and values (slowly
//! moving measurements) each compressed as a column of their own.
//!
//! Layout: a format byte (1), the number of points (u32, little-endian),
//! the length of the time column (u32), the time column (pco of i64
//! microseconds), the value column (pco of f64). Points are in time order,
//! one per time.

use super::{Point, SeriesError};
use crate::twin::Micros;

const FORMAT: u8 = 1;
const HEADER: usize = 1 + 4 + 4;

/// Compresses `points` (in time order, one per time).
pub fn encode(points: &[Point]) -> Result<Vec<u8>, SeriesError> {
    let n = u32::try_from(points.len()).map_err(|_| SeriesError::TooLarge(points.len()))?;
    let times: Vec<i64> = points.iter().map(|p| p.time).collect();
    let values: Vec<f64> = points.iter().map(|p| p.value).collect();
    let config = pco::ChunkConfig::default();
    let codec = |e: pco::errors::PcoError| SeriesError::Codec(e.to_string());
    let t = pco::standalone::simple_compress(&times, &config).map_err(codec)?;
    let v = pco::standalone::simple_compress(&values, &config).map_err(codec)?;
    let t_len = u32::try_from(t.len()).map_err(|_| SeriesError::TooLarge(t.len()))?;
    let mut out = Vec::with_capacity(HEADER + t.len() + v.len());
    out.push(FORMAT);
    out.extend_from_slice(&n.to_le_bytes());
    out.extend_from_slice(&t_len.to_le_bytes());
    out.extend_from_slice(&t);
    out.extend_from_slice(&v);
    Ok(out)
}

/// The points of a block written by [`encode`].
pub fn decode(bytes: &[u8]) -> Result<Vec<Point>, SeriesError> {
    let corrupt = |why: &str| SeriesError::Corrupt(why.to_owned());
    if bytes.len() < HEADER || bytes[0] != FORMAT {
        return Err(corrupt("not a block of format 1"));
    }
    let word = |at: usize| {
        let mut w = [0u8; 4];
        w.copy_from_slice(&bytes[at..at + 4]);
        u32::from_le_bytes(w) as usize
    };
    let (n, t_len) = (word(1), word(5));
    let rest = &bytes[HEADER..];
    if t_len > rest.len() {
        return Err(corrupt("time column cut short"));
    }
    let codec = |e: pco::errors::PcoError| SeriesError::Corrupt(e.to_string());
    let times: Vec<i64> = pco::standalone::simple_decompress(&rest[..t_len]).map_err(codec)?;
    let values: Vec<f64> = pco::standalone::simple_decompress(&rest[t_len..]).map_err(codec)?;
    if times.len() != n || values.len() != n {
        return Err(corrupt("columns of different lengths"));
    }
    Ok(times
        .into_iter()
        .zip(values)
        .map(|(time, value)| Point { time, value })
        .collect())
}

/// Merges `newer` into `older` (both in time order, one per time): a
/// point of `newer` replaces one of `older` at the same time.
pub fn merge(older: Vec<Point>, newer: &[Point]) -> Vec<Point> {
    let mut out = Vec::with_capacity(older.len() + newer.len());
    let mut old = older.into_iter().peekable();
    for p in newer {
        while let Some(o) = old.next_if(|o| o.time < p.time) {
            out.push(o);
        }
        old.next_if(|o| o.time == p.time);
        out.push(*p);
    }
    out.extend(old);
    out
}

/// The start of the bucket of `bucket` length that holds `time`.
pub fn bucket_of(time: Micros, bucket: Micros) -> Micros {
    time.div_euclid(bucket) * bucket
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A realistic signal: a pump's flow rate sampled every second (with
    /// jitter of a few milliseconds), slow drift, a daily cycle and sensor
    /// noise quantized to the instrument's 0.01 resolution.
    fn flow(n: usize) -> Vec<Point> {
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut noise = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % 1000) as f64 / 1000.0 - 0.5
        };
        (0..n)
            .map(|i| {
                let t = i as f64;
                let raw = 42.0
                    + 3.0 * (t / 86_400.0 * std::f64::consts::TAU).sin()
                    + t / 100_000.0
                    + 0.2 * noise();
                Point {
                    time: 1_767_225_600_000_000 + i as i64 * 1_000_000 + (noise() * 4000.0) as i64,
                    value: (raw * 100.0).round() / 100.0,
                }
            })
            .collect()
    }

    #[test]
    fn a_block_gives_back_exactly_its_points() {
        let points = flow(3600);
        let bytes = encode(&points).expect("encode");
        assert_eq!(decode(&bytes).expect("decode"), points);
        assert_eq!(
            decode(&encode(&[]).expect("empty")).expect("decode"),
            vec![]
        );
    }

    #[test]
    fn a_second_by_second_signal_costs_under_four_bytes_a_point() {
        let points = flow(3600);
        let bytes = encode(&points).expect("encode").len();
        let per_point = bytes as f64 / points.len() as f64;
        // 16 bytes a point uncompressed.
        assert!(per_point < 4.0, "{per_point:.2} bytes per point");
    }

    #[test]
    fn damaged_blocks_are_errors_not_panics() {
        let bytes = encode(&flow(100)).expect("encode");
        for cut in [0, 1, 5, 9, 20, bytes.len() - 1] {
            assert!(decode(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        let mut flipped = bytes.clone();
        flipped[0] = 9;
        assert!(decode(&flipped).is_err());
    }

    #[test]
    fn newer_points_replace_older_ones_at_the_same_time() {
        let p = |time, value| Point { time, value };
        let merged = merge(
            vec![p(1, 1.0), p(3, 3.0), p(5, 5.0)],
            &[p(0, 0.5), p(3, 30.0), p(6, 6.0)],
        );
        assert_eq!(
            merged,
            vec![p(0, 0.5), p(1, 1.0), p(3, 30.0), p(5, 5.0), p(6, 6.0)]
        );
    }

    #[test]
    fn buckets_hold_times_before_the_epoch_too() {
        assert_eq!(bucket_of(7, 5), 5);
        assert_eq!(bucket_of(-1, 5), -5);
        assert_eq!(bucket_of(-5, 5), -5);
    }
}
