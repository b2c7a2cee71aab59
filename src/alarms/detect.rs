//! Detectors over a twin's recent values, for the SUSPECT alarms of
//! anomaly, change-point and peers rules, and forecasts. The statistics are
//! Grafana's `augurs` crates': the median absolute deviation detector
//! (robust to the outliers it looks for), Bayesian online change-point
//! detection (a Normal-Gamma model of each level), DBSCAN over the buckets
//! of sibling twins' series, and exponential smoothing (AutoETS) with
//! prediction intervals. Their
//! errors carry no thread-safe payload, so each is turned into `None` or
//! text at once; inputs are kept finite (their non-finite paths may panic).

use std::collections::VecDeque;

use augurs_core::{Fit, Predict};
use augurs_outlier::{DbscanDetector, MADDetector, OutlierDetector};
use changepoint::rv::dist::{Gaussian, NormalGamma};
use changepoint::{BocpdLike as _, BocpdTruncated};

use crate::records::Evidence;
use crate::twin::Micros;

/// The most values a twin's recent history holds for a peers rule (an
/// anomaly rule holds its window).
const MAX_RECENT: usize = 10_000;

/// The buckets a peers rule compares twins over.
pub const PEER_BUCKETS: usize = 10;

/// The fewest peers (the twin included) a peers rule compares.
pub const MIN_PEERS: usize = 3;

/// The fewest reports a change-point rule judges.
pub const MIN_SHIFT_VALUES: usize = 20;

/// The fewest reports a level must hold to count as one: shorter runs are
/// spikes, the anomaly rule's business.
const MIN_LEVEL: usize = 3;

/// How many reports on either side of a change point its jump is
/// measured over (medians of each side).
const JUMP_SPAN: usize = 10;

/// A twin's recent values of one field, oldest first.
#[derive(Debug, Clone, Default)]
pub struct Recent {
    values: VecDeque<(Micros, f64)>,
    /// Fitted on the values as they were `since_fit` reports ago (none:
    /// not yet, or they do not vary enough to judge by).
    fitted: Option<MADDetector>,
    since_fit: usize,
    /// How many values were ever added.
    pushed: u64,
    /// A change-point rule's detector, stepped once per value.
    online: Option<Box<Online>>,
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
        self.since_fit = self.since_fit.saturating_add(1);
        self.pushed += 1;
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

    /// Whether the field's level shifted within the values so far (a
    /// change-point rule of `sensitivity` over `window` reports, the last
    /// one added included): see [`Levels::shifted`]. The detector steps
    /// once per value; after `window` more it starts again on the window
    /// (its scale taken afresh). `None` until there are
    /// [`MIN_SHIFT_VALUES`] (or the window), or while they do not vary.
    pub fn shift(&mut self, sensitivity: f64, window: usize) -> Option<(bool, Evidence)> {
        let n = self.values.len();
        if n < MIN_SHIFT_VALUES.min(window) {
            return None;
        }
        let first = self.pushed - n as u64;
        let stepped = match self.online.as_deref_mut() {
            // Behind by the newest value only: step it (until it has
            // stepped a window's worth past the one it started on).
            Some(o) if o.stepped < 2 * window as u64 && o.next() + 1 == self.pushed => {
                let v = self.values.back().map(|(_, v)| *v)?;
                o.step(v).is_some()
            }
            _ => false,
        };
        if !stepped {
            let xs: Vec<f64> = self.values.iter().map(|(_, v)| *v).collect();
            self.online = Online::start(&xs, first, window).map(Box::new);
        }
        let o = self.online.as_deref()?;
        let xs: Vec<f64> = self.values.iter().map(|(_, v)| *v).collect();
        let starts = o.starts.iter().map(|s| s.saturating_sub(first) as usize);
        Levels::new(starts, n, o.sigma, o.center).shifted(&xs, sensitivity)
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

/// The median of `xs` (reordered); NaN when empty.
fn median(xs: &mut [f64]) -> f64 {
    if xs.is_empty() {
        return f64::NAN;
    }
    xs.sort_by(f64::total_cmp);
    let mid = xs.len() / 2;
    if xs.len() % 2 == 1 {
        xs[mid]
    } else {
        (xs[mid - 1] + xs[mid]) / 2.0
    }
}

/// The standard deviation of the noise about the level: from the median
/// absolute difference of consecutive values (a level shift moves one
/// difference, a drift hardly any), or, when most differences are 0 (a
/// value that steps), their root mean square. `None` if the values never
/// move.
fn noise(xs: &[f64]) -> Option<f64> {
    let mut d: Vec<f64> = xs.windows(2).map(|w| (w[1] - w[0]).abs()).collect();
    let rms = (d.iter().map(|x| x * x).sum::<f64>() / d.len() as f64).sqrt();
    let m = median(&mut d);
    // A difference of two values has √2 times the noise's deviation; a
    // normal deviation is 1.4826 median absolute deviations.
    let sigma = if m > 0.0 { 1.4826 * m } else { rms } / std::f64::consts::SQRT_2;
    (sigma.is_finite() && sigma > 0.0).then_some(sigma)
}

/// Bayesian online change-point detection (a Normal-Gamma model of each
/// level) over a twin's values, stepped once per value.
#[derive(Debug, Clone)]
struct Online {
    bocpd: BocpdTruncated<f64, Gaussian, NormalGamma>,
    /// The detector's prior expects values about 0 with a deviation of 1:
    /// they are standardized by these, taken when it started.
    center: f64,
    sigma: f64,
    /// The index (counted in values ever added) of its first value, and
    /// how many it has stepped.
    first: u64,
    stepped: u64,
    /// Where the levels start (same indexes), by the most likely run
    /// length after each value: a later value may move the start of the
    /// current level back, forgetting the starts after it.
    starts: Vec<u64>,
}

impl Online {
    /// A detector stepped over `xs` (the first at index `first`), with
    /// `window` the expected length of a level. `None` if they never move.
    fn start(xs: &[f64], first: u64, window: usize) -> Option<Online> {
        let sigma = noise(xs)?;
        let center = median(&mut xs.to_vec());
        let prior = NormalGamma::new(0.0, 1.0, 1.0, 1.0).ok()?;
        let hazard = (window as f64).clamp(MIN_SHIFT_VALUES as f64, 10_000.0);
        let mut online = Online {
            bocpd: BocpdTruncated::new(hazard, prior),
            center,
            sigma,
            first,
            stepped: 0,
            starts: vec![first],
        };
        for &x in xs {
            online.step(x)?;
        }
        Some(online)
    }

    /// The index of the next value.
    fn next(&self) -> u64 {
        self.first + self.stepped
    }

    /// Steps one value; `None` if it cannot be standardized (the detector
    /// must only see finite values).
    fn step(&mut self, x: f64) -> Option<()> {
        let z = ((x - self.center) / self.sigma).clamp(-1e6, 1e6);
        if !z.is_finite() {
            return None;
        }
        let at = self.next();
        let r = self.bocpd.step(&z);
        // The most likely run length: the current level began that many
        // values ago.
        let run = r
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(b.1))
            .map_or(0, |(i, _)| i as u64);
        self.stepped += 1;
        let start = at.saturating_sub(run).max(self.first);
        self.starts.retain(|&s| s <= start);
        if self.starts.last() != Some(&start) {
            self.starts.push(start);
        }
        Some(())
    }
}

/// Where the levels of `xs` (oldest first, finite) start, by Bayesian
/// online change-point detection stepped over them (`window` the expected
/// length of a level), and the noise's deviation: see [`Levels::new`].
/// `None` if the values never move.
pub fn levels(xs: &[f64], window: usize) -> Option<Levels> {
    let o = Online::start(xs, 0, window)?;
    let starts = o.starts.iter().map(|&s| s as usize);
    Some(Levels::new(starts, xs.len(), o.sigma, o.center))
}

/// The levels of a field's recent values: see [`levels`].
#[derive(Debug, Clone, PartialEq)]
pub struct Levels {
    /// Where each starts (the first at 0).
    pub starts: Vec<usize>,
    /// The noise's standard deviation.
    pub sigma: f64,
    /// The values' median.
    pub center: f64,
}

impl Levels {
    /// The levels of `n` values starting at `starts` (ascending; any
    /// before 0 or past the end ignored), runs shorter than [`MIN_LEVEL`]
    /// merged into the level before (spikes are not levels; a last one too
    /// short to tell yet is left out).
    fn new(starts: impl Iterator<Item = usize>, n: usize, sigma: f64, center: f64) -> Levels {
        let mut bounds: Vec<usize> = starts.filter(|&s| s > 0 && s < n).chain([n]).collect();
        bounds.sort_unstable();
        bounds.dedup();
        let mut kept = vec![0];
        for w in bounds.windows(2) {
            if w[1] - w[0] >= MIN_LEVEL {
                kept.push(w[0]);
            }
        }
        Levels {
            starts: kept,
            sigma,
            center,
        }
    }

    /// Whether the level of `xs` (the values the levels were found in)
    /// shifted: a change point counts if the median of the [`JUMP_SPAN`]
    /// values after it is at least `2 / sensitivity` noise deviations from
    /// the median of those before; the level shifted if the last level is
    /// that far from the level before the first change point that counts.
    /// A level that came back is no shift, and one that stays is judged
    /// until its change point leaves the window. The evidence: the last
    /// level's median (observed), the band about the level before
    /// (expected), the distance in noise deviations (score).
    pub fn shifted(&self, xs: &[f64], sensitivity: f64) -> Option<(bool, Evidence)> {
        let (starts, sigma) = (&self.starts, self.sigma);
        let threshold = 2.0 / sensitivity;
        let level = |from: usize, to: usize| -> Option<f64> {
            Some(median(&mut xs.get(from..to)?.to_vec()))
        };
        let mut baseline = None;
        for (i, &s) in starts.iter().enumerate().skip(1) {
            let before = starts[i - 1].max(s.saturating_sub(JUMP_SPAN));
            let after = starts.get(i + 1).copied().unwrap_or(xs.len());
            if s - before < MIN_LEVEL {
                continue;
            }
            let was = level(before, s)?;
            let now = level(s, after.min(s + JUMP_SPAN))?;
            if ((now - was) / sigma).abs() >= threshold {
                baseline = Some(was);
                break;
            }
        }
        let last = level(*starts.last()?, xs.len())?;
        let expected = baseline.unwrap_or(self.center);
        let score = ((last - expected) / sigma).abs();
        let evidence = Evidence {
            observed: last,
            low: expected - threshold * sigma,
            high: expected + threshold * sigma,
            score,
        };
        finite(&evidence).then_some((baseline.is_some() && score >= threshold, evidence))
    }
}

/// Whether the level of `xs` shifted: [`levels`] judged by
/// [`Levels::shifted`].
pub fn level_shift(xs: &[f64], sensitivity: f64, window: usize) -> Option<(bool, Evidence)> {
    levels(xs, window)?.shifted(xs, sensitivity)
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

    /// Runs a change-point rule over `values`: the indexes at which its
    /// alarm would be raised (judged shifted after not).
    fn run_shift(values: &[f64], sensitivity: f64, window: usize) -> Vec<usize> {
        let mut r = Recent::default();
        let mut raised = Vec::new();
        let mut holds = false;
        for (i, &v) in values.iter().enumerate() {
            r.push(i as i64, v, window, i64::MIN);
            if let Some((shifted, _)) = r.shift(sensitivity, window) {
                if shifted && !holds {
                    raised.push(i);
                }
                holds = shifted;
            }
        }
        raised
    }

    #[test]
    fn level_shifts_are_found_and_clean_signals_stay_quiet() {
        let window = 200;
        // Steps of 2.4 (about 6 noise deviations) that stay, at 1,000 and
        // 3,000; a spike at 2,000 is no shift.
        let mut values = clean(5, 5_000);
        for (i, v) in values.iter_mut().enumerate() {
            if (1_000..2_000).contains(&i) || i >= 3_000 {
                *v += 2.4;
            }
        }
        values[2_500] += 6.0;
        let raised = run_shift(&values, 0.5, window);
        println!("level shifts raised at {raised:?}");
        // Found within a few reports (a level needs three).
        for step in [1_000, 3_000] {
            assert!(
                raised.iter().any(|&i| (step..step + 20).contains(&i)),
                "step at {step} missed: {raised:?}"
            );
        }
        // The step back at 2,000 is a shift too (the level the window
        // knew), the spike is not.
        assert!(
            raised.iter().all(|&i| (1_000..1_020).contains(&i)
                || (2_000..2_020).contains(&i)
                || (3_000..3_020).contains(&i)),
            "{raised:?}"
        );
        // The evidence: the new level, the band about the old one.
        let mut r = Recent::default();
        for (i, &v) in values[..1_030].iter().enumerate() {
            r.push(i as i64, v, window, i64::MIN);
        }
        r.since_fit = usize::MAX;
        let (shifted, e) = r.shift(0.5, window).expect("judged");
        assert!(shifted, "{e:?}");
        let before = values[980..1_000].iter().sum::<f64>() / 20.0;
        assert!(e.low < before && before < e.high, "{e:?} about {before}");
        assert!(e.observed > e.high && e.score > 4.0, "{e:?}");
        // A level that comes back is judged normal again: the alarm
        // clears while the change points are still in the window.
        let mut r = Recent::default();
        let mut noise = Noise(17);
        for i in 0..160 {
            let v = 10.0 + if (100..130).contains(&i) { 2.5 } else { 0.0 };
            r.push(i, v + 0.3 * noise.normal(), window, i64::MIN);
            r.since_fit = usize::MAX;
            let judged = r.shift(0.5, window);
            if (110..130).contains(&i) {
                assert!(judged.is_some_and(|(s, _)| s), "{i}: {judged:?}");
            }
            if i >= 140 {
                assert!(judged.is_some_and(|(s, _)| !s), "{i}: {judged:?}");
            }
        }
        // False positives: alarms raised on clean signals (slow cycle,
        // drift, noise), over ten seeds, at three sensitivities.
        for (sensitivity, most) in [(0.2, 0.000_1), (0.5, 0.000_5), (0.8, 0.005)] {
            let (mut raised, mut judged) = (0, 0);
            for seed in 1..=10 {
                let values = clean(seed * 7919, 5_000);
                raised += run_shift(&values, sensitivity, window).len();
                judged += values.len() - MIN_SHIFT_VALUES;
            }
            let rate = raised as f64 / judged as f64;
            println!(
                "change-point rule (sensitivity {sensitivity}, window {window}): {raised} alarms raised over {judged} clean values = {:.4} % of reports",
                rate * 100.0
            );
            assert!(rate <= most, "false-positive rate {rate} at {sensitivity}");
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
        // Change points: nothing to judge in a constant; a value that
        // steps between two levels is judged by its rare differences.
        let mut r = Recent::default();
        for i in 0..100 {
            r.push(i, 5.0, 100, i64::MIN);
        }
        assert_eq!(r.shift(0.5, 100), None);
        assert_eq!(level_shift(&[1.0; 3], 0.5, 100), None);
        let steps: Vec<f64> = (0..60).map(|i| if i < 50 { 5.0 } else { 6.0 }).collect();
        let (shifted, e) = level_shift(&steps, 0.5, 100).expect("judged");
        assert!(shifted && e.observed == 6.0, "{e:?}");
        let huge: Vec<f64> = (0..60).map(|i| if i < 50 { 0.0 } else { 1e300 }).collect();
        assert_eq!(level_shift(&huge, 0.5, 100), None, "overflows");
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
