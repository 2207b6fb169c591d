//! Figures from a run, measured the way chrony's simulation tests measure them (clknetsim): the
//! clock's error against true time once per second, RMS about zero (bias included), and the
//! frequency as the clock's rate error over each second (slews included).

/// RMS and largest absolute value.
#[derive(Clone, Copy, PartialEq, Debug, Default)]
pub struct Spread {
    /// Root mean square about zero.
    pub rms: f64,
    /// Largest absolute value.
    pub max: f64,
}

/// RMS and maximum of `values`.
pub fn spread(values: &[f64]) -> Spread {
    if values.is_empty() {
        return Spread::default();
    }
    let sum: f64 = values.iter().map(|v| v * v).sum();
    Spread {
        rms: (sum / values.len() as f64).sqrt(),
        max: values.iter().fold(0.0, |m, v| m.max(v.abs())),
    }
}

/// The clock's rate error over each second: error(t + 1) - error(t).
pub fn frequencies(errors: &[f64]) -> Vec<f64> {
    errors.windows(2).map(|w| w[1] - w[0]).collect()
}

/// chrony's sync time (clknetsim `find_sync`): the first second from which the error stays within
/// `time_limit` and the frequency within `freq_limit` to the end.
pub fn sync_time(errors: &[f64], time_limit: f64, freq_limit: f64) -> usize {
    sync_time_of(errors, &frequencies(errors), time_limit, freq_limit)
}

/// [`sync_time`] with the frequencies given apart (`freqs[i]` over second `i`..`i + 1`), for a
/// clock that was stepped: clknetsim's frequency is the clock's rate, which a step does not change.
pub fn sync_time_of(errors: &[f64], freqs: &[f64], time_limit: f64, freq_limit: f64) -> usize {
    let last_bad = (0..errors.len()).rev().find(|&i| {
        errors[i].abs() > time_limit || freqs.get(i).is_some_and(|f| f.abs() > freq_limit)
    });
    last_bad.map_or(0, |i| i + 1)
}

/// Shortest and mean interval between the times in `times`.
pub fn intervals(times: &[f64]) -> (f64, f64) {
    if times.len() < 2 {
        return (f64::INFINITY, f64::INFINITY);
    }
    let min = times
        .windows(2)
        .map(|w| w[1] - w[0])
        .fold(f64::INFINITY, f64::min);
    let mean = (times[times.len() - 1] - times[0]) / (times.len() - 1) as f64;
    (min, mean)
}

/// The median of `values` (the mean of the middle two for an even count).
pub fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len();
    match n {
        0 => f64::NAN,
        _ if n % 2 == 1 => sorted[n / 2],
        _ => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figures_of_a_known_series() {
        let s = spread(&[3.0, -4.0]);
        assert!((s.rms - 12.5f64.sqrt()).abs() < 1e-12);
        assert_eq!(s.max, 4.0);
        assert_eq!(sync_time(&[0.5, 0.0, 0.0, 0.0], 0.1, 1.0), 1);
        // The frequency over second 1..2 is 0.5: too fast, so the sync starts at 2.
        assert_eq!(sync_time(&[0.0, 0.0, 0.05, 0.05], 0.1, 0.01), 2);
        assert_eq!(intervals(&[0.0, 1.0, 3.0]), (1.0, 1.5));
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
    }
}
