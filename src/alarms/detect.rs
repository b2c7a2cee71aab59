//! Detectors over a twin's recent values, for the SUSPECT alarms of
//! anomaly and peers rules, and forecasts. The statistics are Grafana's
//! `augurs` crates': the median absolute deviation detector (robust to the
//! outliers it looks for), DBSCAN over the buckets of sibling twins' series,
//! and exponential smoothing (AutoETS) with prediction intervals. Their
//! errors carry no thread-safe payload, so each is turned into `None` or
//! text at once; inputs are kept finite (their non-finite paths may panic).

use std::collections::VecDeque;

use augurs_core::{Fit, Predict};
use augurs_outlier::{DbscanDetector, MADDetector, OutlierDetector};

use crate::records::Evidence;
use crate::twin::Micros;

/// The most values a twin's recent history holds for a peers rule (an
/// anomaly rule holds its window).
const MAX_RECENT: usize = 10_000;

/// The buckets a peers rule compares twins over.
pub const PEER_BUCKETS: usize = 10;

/// The fewest peers (the twin included) a peers rule compares.
pub const MIN_PEERS: usize = 3;

/// A twin's recent values of one field, oldest first.
#[derive(Debug, Clone, Default)]
pub struct Recent {
    values: VecDeque<(Micros, f64)>,
    /// Fitted on the values as they were `since_fit` reports ago (none:
    /// not yet, or they do not vary enough to judge by).
    fitted: Option<MADDetector>,
    since_fit: usize,
}

impl Recent {
    pub fn len(&self) -> usize {
        self.values.len()
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// Adds a value reported at `at`, keeping the last `keep` and none
    /// before `since`.
    pub fn push(&mut self, at: Micros, v: f64, keep: usize, since: Micros) {
        if !v.is_finite() {
            return;
        }
        self.values.push_back((at, v));
        let keep = keep.clamp(1, MAX_RECENT);
        while self.values.len() > keep || self.values.front().is_some_and(|(t, _)| *t < since) {
            self.values.pop_front();
        }
        self.since_fit += 1;
    }

    /// How unusual `v` is against the values so far (an anomaly rule of
    /// `sensitivity` over `window` reports): whether it is outlying, and
    /// the evidence. `None` until there are enough values, or while they
    /// do not vary (a median absolute deviation of 0 judges nothing).
    pub fn anomaly(&mut self, v: f64, sensitivity: f64, window: usize) -> Option<(bool, Evidence)> {
        if !v.is_finite() || self.values.len() < window.clamp(1, 30) {
            return None;
        }
        // Refit every sixteenth of the window: medians move slowly.
        if self.fitted.is_none() || self.since_fit >= (window / 16).max(1) {
            self.since_fit = 0;
            let values: Vec<f64> = self.values.iter().map(|(_, v)| *v).collect();
            self.fitted = MADDetector::calculate_double_medians(&[&values])
                .ok()
                .and_then(|m| {
                    let mut d = MADDetector::with_sensitivity(sensitivity).ok()?;
                    d.set_medians(m);
                    Some(d)
                });
        }
        let d = self.fitted.as_ref()?;
        let out = d.detect(&d.preprocess(&[&[v]]).ok()?).ok()?;
        let series = out.series_results.first()?;
        let score = *series.scores.first()?;
        let band = out.cluster_band?;
        let evidence = Evidence {
            observed: v,
            low: *band.min.first()?,
            high: *band.max.first()?,
            score,
        };
        finite(&evidence).then_some((series.is_outlier, evidence))
    }

    /// The mean of the values in each of `buckets` equal spans of
    /// `from..to` (NaN where there are none).
    fn buckets(&self, from: Micros, to: Micros, buckets: usize) -> Vec<f64> {
        let span = (to - from).max(1);
        let mut sums = vec![(0.0, 0u32); buckets];
        for &(t, v) in &self.values {
            if t < from || t >= to {
                continue;
            }
            let i = usize::try_from((t - from) * buckets as i64 / span).unwrap_or(0);
            if let Some(s) = sums.get_mut(i.min(buckets - 1)) {
                s.0 += v;
                s.1 += 1;
            }
        }
        sums.into_iter()
            .map(|(sum, n)| if n == 0 { f64::NAN } else { sum / f64::from(n) })
            .collect()
    }
}

fn finite(e: &Evidence) -> bool {
    e.observed.is_finite() && e.low.is_finite() && e.high.is_finite() && e.score.is_finite()
}

/// Which of `twins` (peers: one model, one container) behave unlike the
/// others over `from..to`: for each, whether it does, with the evidence
/// (its last bucket's mean, the range of the others' there, the share of
/// its buckets in which it was unlike them). `None` for a twin without
/// values then; all `None` with fewer than [`MIN_PEERS`] that have some.
pub fn peers(
    twins: &[&Recent],
    from: Micros,
    to: Micros,
    sensitivity: f64,
) -> Vec<Option<(bool, Evidence)>> {
    let rows: Vec<Vec<f64>> = twins
        .iter()
        .map(|r| r.buckets(from, to, PEER_BUCKETS))
        .collect();
    let with_data = rows
        .iter()
        .filter(|r| r.iter().any(|v| v.is_finite()))
        .count();
    let none = || vec![None; twins.len()];
    if with_data < MIN_PEERS {
        return none();
    }
    let Ok(detector) = DbscanDetector::with_sensitivity(sensitivity) else {
        return none();
    };
    let refs: Vec<&[f64]> = rows.iter().map(Vec::as_slice).collect();
    let Some(out) = detector
        .preprocess(&refs)
        .ok()
        .and_then(|data| detector.detect(&data).ok())
    else {
        return none();
    };
    rows.iter()
        .enumerate()
        .map(|(i, row)| {
            let result = out.series_results.get(i)?;
            let present: Vec<usize> = (0..row.len()).filter(|&b| row[b].is_finite()).collect();
            let last = *present.last()?;
            let unlike = present
                .iter()
                .filter(|&&b| result.scores.get(b).is_some_and(|s| *s > 0.5))
                .count();
            let score = unlike as f64 / present.len() as f64;
            // The others' range in that bucket.
            let others = rows
                .iter()
                .enumerate()
                .filter(|(j, _)| *j != i)
                .map(|(_, r)| r[last])
                .filter(|v| v.is_finite());
            let (low, high) = others.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
                (lo.min(v), hi.max(v))
            });
            let evidence = Evidence {
                observed: row[last],
                low,
                high,
                score,
            };
            finite(&evidence).then_some((score >= 0.5, evidence))
        })
        .collect()
}

/// A forecast: the expected values of the next steps, and the band each
/// falls in with the asked probability.
#[derive(Debug, Clone, PartialEq)]
pub struct Forecast {
    pub point: Vec<f64>,
    pub lower: Vec<f64>,
    pub upper: Vec<f64>,
}

/// The fewest values a forecast is fitted on.
pub const MIN_FORECAST_POINTS: usize = 10;

/// Forecasts `horizon` more steps of `values` (equally spaced, oldest
/// first; non-finite ones are left out) with prediction intervals of
/// probability `level` (above 0, below 1): exponential smoothing, the
/// best of the non-seasonal models by AICc.
pub fn forecast(values: &[f64], horizon: usize, level: f64) -> Result<Forecast, String> {
    let y: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
    if y.len() < MIN_FORECAST_POINTS {
        return Err(format!(
            "{} values to fit on; a forecast needs at least {MIN_FORECAST_POINTS}",
            y.len()
        ));
    }
    if !(level > 0.0 && level < 1.0) {
        return Err("the level is a probability above 0 and below 1".into());
    }
    let fitted = augurs_ets::AutoETS::non_seasonal()
        .fit(&y)
        .map_err(|e| format!("no model fits: {e}"))?;
    let f = fitted
        .predict(horizon, level)
        .map_err(|e| format!("cannot forecast: {e}"))?;
    let (lower, upper) = match f.intervals {
        Some(i) => (i.lower, i.upper),
        None => (f.point.clone(), f.point.clone()),
    };
    if f.point
        .iter()
        .chain(&lower)
        .chain(&upper)
        .any(|v| !v.is_finite())
    {
        return Err("the model gave no finite forecast".into());
    }
    Ok(Forecast {
        point: f.point,
        lower,
        upper,
    })
}

/// When a forecast meets a limit condition (ABOVE, BELOW, OUTSIDE; none
/// for others): the first step at which the expected value does, and the
/// first at which its band does (the earliest it may).
pub fn crossing(
    f: &Forecast,
    c: &crate::records::Condition,
) -> Option<(Option<usize>, Option<usize>)> {
    use crate::records::Condition;
    let meets: Box<dyn Fn(f64) -> bool> = match *c {
        Condition::Above { limit, .. } => Box::new(move |v| v > limit),
        Condition::Below { limit, .. } => Box::new(move |v| v < limit),
        Condition::Outside { low, high, .. } => Box::new(move |v| v < low || v > high),
        _ => return None,
    };
    let expected = f.point.iter().position(|&v| meets(v));
    let possible = (0..f.point.len()).find(|&i| meets(f.lower[i]) || meets(f.upper[i]));
    Some((expected, possible))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A deterministic pseudo-random stream (xorshift) of values in 0..1.
    struct Noise(u64);

    impl Noise {
        fn next(&mut self) -> f64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            (self.0 >> 11) as f64 / (1u64 << 53) as f64
        }

        /// Roughly normal: the sum of twelve uniforms, centred.
        fn normal(&mut self) -> f64 {
            (0..12).map(|_| self.next()).sum::<f64>() - 6.0
        }
    }

    /// A realistic clean signal: a slow cycle, drift and instrument noise.
    fn clean(seed: u64, n: usize) -> Vec<f64> {
        let mut noise = Noise(seed);
        (0..n)
            .map(|i| {
                let t = i as f64;
                50.0 + 5.0 * (t / 600.0).sin() + t * 0.0005 + 0.4 * noise.normal()
            })
            .collect()
    }

    /// Runs an anomaly rule over `values`: the indexes it finds outlying.
    fn run(values: &[f64], sensitivity: f64, window: usize) -> Vec<usize> {
        let mut r = Recent::default();
        let mut found = Vec::new();
        for (i, &v) in values.iter().enumerate() {
            if let Some((true, _)) = r.anomaly(v, sensitivity, window) {
                found.push(i);
            }
            r.push(i as i64, v, window, i64::MIN);
        }
        found
    }

    #[test]
    fn injected_spikes_are_found_and_clean_signals_stay_quiet() {
        let mut values = clean(7, 5_000);
        let spikes = [1_000, 2_345, 3_999];
        for &i in &spikes {
            values[i] += 6.0;
        }
        let found = run(&values, 0.5, 500);
        for i in spikes {
            assert!(found.contains(&i), "spike at {i} missed: {found:?}");
        }
        // The false-positive rate on clean signals, over ten seeds, at
        // three sensitivities.
        for (sensitivity, most) in [(0.2, 0.000_5), (0.35, 0.005), (0.5, 0.01)] {
            // At 0.2 a spike must stand out from the window's spread,
            // the daily cycle's included, by 4.8 deviations: not these.
            let found = run(&values, sensitivity, 500);
            if sensitivity >= 0.5 {
                assert!(
                    spikes.iter().all(|i| found.contains(i)),
                    "{sensitivity}: {found:?}"
                );
            }
            let (mut flagged, mut judged) = (0, 0);
            for seed in 1..=10 {
                let values = clean(seed * 7919, 5_000);
                flagged += run(&values, sensitivity, 500).len();
                judged += values.len() - 30;
            }
            let rate = flagged as f64 / judged as f64;
            println!(
                "anomaly rule (sensitivity {sensitivity}, window 500): false positives {flagged} of {judged} clean values = {:.3} %",
                rate * 100.0
            );
            assert!(rate < most, "false-positive rate {rate} at {sensitivity}");
        }
    }

    #[test]
    fn a_constant_or_short_history_judges_nothing() {
        let mut r = Recent::default();
        for i in 0..100 {
            r.push(i, 5.0, 100, i64::MIN);
        }
        assert_eq!(r.anomaly(50.0, 0.5, 100), None, "no deviation to judge by");
        let mut r = Recent::default();
        r.push(0, 1.0, 100, i64::MIN);
        assert_eq!(r.anomaly(50.0, 0.5, 100), None, "one value");
        let mut r = Recent::default();
        for (i, v) in clean(3, 100).into_iter().enumerate() {
            r.push(i as i64, v, 100, i64::MIN);
        }
        r.push(101, f64::NAN, 100, i64::MIN);
        assert_eq!(r.len(), 100, "non-finite values are not kept");
        assert_eq!(r.anomaly(f64::INFINITY, 0.5, 100), None);
        let (outlying, e) = r.anomaly(80.0, 0.5, 100).expect("judged");
        assert!(outlying);
        assert!(e.low < 50.0 && e.high > 50.0 && e.high < 80.0, "{e:?}");
        assert!(e.score > 2.9, "{e:?}");
    }

    #[test]
    fn the_peer_unlike_the_others_is_flagged() {
        let mut noise = Noise(11);
        let mut twins = vec![Recent::default(); 6];
        for t in 0..600 {
            for (i, r) in twins.iter_mut().enumerate() {
                // The last one runs 30 % hotter than its peers.
                let base = if i == 5 { 65.0 } else { 50.0 };
                r.push(t * 1_000_000, base + noise.normal(), 10_000, 0);
            }
        }
        let refs: Vec<&Recent> = twins.iter().collect();
        let found = peers(&refs, 0, 600_000_000, 0.5);
        for (i, f) in found.iter().enumerate() {
            let (unlike, e) = f.expect("judged");
            assert_eq!(unlike, i == 5, "twin {i}: {e:?}");
            if i == 5 {
                assert!(
                    e.observed > 60.0 && e.high < 60.0 && e.score >= 0.5,
                    "{e:?}"
                );
            }
        }
        // Clean peers (one distribution, each its own noise): how many
        // twins of 200 groups of six are flagged.
        let mut flagged = 0;
        for seed in 1..=200u64 {
            let mut noise = Noise(seed * 104_729);
            let mut group = vec![Recent::default(); 6];
            for t in 0..600 {
                for r in &mut group {
                    r.push(t * 1_000_000, 50.0 + noise.normal(), 10_000, 0);
                }
            }
            let refs: Vec<&Recent> = group.iter().collect();
            flagged += peers(&refs, 0, 600_000_000, 0.5)
                .iter()
                .filter(|f| f.is_some_and(|(unlike, _)| unlike))
                .count();
        }
        println!(
            "peers rule (sensitivity 0.5): {flagged} of 1200 clean twins flagged = {:.2} %",
            flagged as f64 / 12.0
        );
        assert!(flagged <= 12, "{flagged} of 1200");
        // Too few peers with values: nothing judged.
        let found = peers(&refs[..2], 0, 600_000_000, 0.5);
        assert_eq!(found, vec![None, None]);
        let empty = Recent::default();
        let found = peers(&[&empty, refs[0], refs[1], refs[2]], 0, 600_000_000, 0.5);
        assert!(found[0].is_none() && found[1].is_some_and(|(u, _)| !u));
    }

    #[test]
    fn a_trend_is_forecast_with_widening_intervals() {
        let values: Vec<f64> = (0..200).map(|i| 20.0 + 0.1 * i as f64).collect();
        let f = forecast(&values, 50, 0.95).expect("forecast");
        assert_eq!(f.point.len(), 50);
        assert!(
            (f.point[49] - (20.0 + 0.1 * 249.0)).abs() < 1.0,
            "{:?}",
            f.point[49]
        );
        assert!(f.lower.iter().zip(&f.point).all(|(l, p)| l <= p));
        let limit = |limit| crate::records::Condition::Above {
            field: "t".into(),
            limit,
            deadband: 0.0,
        };
        // 20 + 0.1 i passes 40.05 at i = 201: the forecast's second step.
        let (expected, possible) = crossing(&f, &limit(40.05)).expect("a limit");
        assert_eq!(expected, Some(1), "{:?}", &f.point[..3]);
        assert!(possible.is_some_and(|p| p <= 1));
        assert_eq!(crossing(&f, &limit(1e9)), Some((None, None)));
        assert!(forecast(&values[..5], 10, 0.95).is_err());
        assert!(forecast(&values, 10, 1.5).is_err());
        assert!(forecast(&[f64::NAN; 50], 10, 0.9).is_err());
        let flat = forecast(&[3.0; 40], 5, 0.9).expect("a constant series");
        assert!(
            flat.point.iter().all(|v| (v - 3.0).abs() < 1e-6),
            "{flat:?}"
        );
    }
}
