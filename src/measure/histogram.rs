//! The HdrHistograms every latency lives in: their bounds and precision,
//! exact addition, and the mergeable encoding a results file carries
//! (HdrHistogram V2 deflate serialization in base64).
//!
//! This file owns the histogram configuration and the encoding and the one
//! error they can raise ([`MetricsError`]); it knows nothing of attempts,
//! operations or seconds (the recorder and timeline do) and does no I/O.

use std::io::Cursor;

use base64::Engine as _;
use hdrhistogram::serialization::{Deserializer, Serializer as _, V2DeflateSerializer};
use hdrhistogram::Histogram;

/// Highest latency the histograms track, in microseconds (one hour); larger values are clamped to it.
pub const MAX_LATENCY_US: u64 = 3_600_000_000;

/// Significant decimal digits of the per-operation latency histograms (values in microseconds).
pub const LATENCY_SIGNIFICANT_DIGITS: u8 = 3;

/// Significant decimal digits of the per-second timeline histograms (values in microseconds).
pub const TIMELINE_SIGNIFICANT_DIGITS: u8 = 2;

/// Errors of client-side measurement: only decoding (or encoding) a histogram can fail.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    /// The encoded histogram was not valid standard-alphabet base64.
    #[error("histogram is not valid base64: {0}")]
    Base64(#[from] base64::DecodeError),
    /// The bytes were not an HdrHistogram V2 (deflate) serialization of a `u64`-count histogram.
    #[error("histogram could not be deserialized: {0}")]
    Deserialize(#[from] hdrhistogram::serialization::DeserializeError),
    /// The histogram could not be serialized (a bucket count above `i64::MAX`).
    #[error("histogram could not be serialized: {0}")]
    Serialize(#[from] hdrhistogram::serialization::V2DeflateSerializeError),
}

/// A latency histogram (values in microseconds) with the given precision over 1 µs ..= [`MAX_LATENCY_US`].
pub(super) fn new_histogram(significant_digits: u8) -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_LATENCY_US, significant_digits)
        .expect("constant histogram bounds (1 us ..= 1 h, 2-3 significant digits) are valid")
}

/// Adds `source` into `target` exactly; falls back to re-recording bucket by bucket (clamped)
/// should the two ever differ in configuration (never between this module's own histograms).
pub(super) fn add_histogram(target: &mut Histogram<u64>, source: &Histogram<u64>) {
    if target.add(source).is_err() {
        for bucket in source.iter_recorded() {
            target.saturating_record_n(bucket.value_iterated_to(), bucket.count_at_value());
        }
    }
}

/// Encodes a histogram (values in microseconds) as HdrHistogram V2 (deflate) serialization in
/// standard-alphabet base64, the format of [`EncodedHistograms`](crate::measure::EncodedHistograms).
pub fn encode_histogram(h: &Histogram<u64>) -> Result<String, MetricsError> {
    let mut bytes = Vec::new();
    V2DeflateSerializer::new().serialize(h, &mut bytes)?;
    Ok(base64::engine::general_purpose::STANDARD.encode(bytes))
}

/// Encoding for [`EncodedHistograms`](crate::measure::EncodedHistograms); the empty string
/// (rejected by [`decode_histogram`]) stands for a failure, which needs a bucket count above
/// `i64::MAX` and so cannot happen in practice.
pub(super) fn encode_or_empty(h: &Histogram<u64>) -> String {
    encode_histogram(h).unwrap_or_default()
}

/// Decodes one of the [`EncodedHistograms`](crate::measure::EncodedHistograms) strings (base64 of
/// an HdrHistogram V2 (deflate) serialization) back into a histogram of microseconds, ready for
/// `Histogram::add`.
pub fn decode_histogram(encoded: &str) -> Result<Histogram<u64>, MetricsError> {
    let bytes = base64::engine::general_purpose::STANDARD.decode(encoded.trim())?;
    Ok(Deserializer::new().deserialize(&mut Cursor::new(bytes))?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn latencies() -> Histogram<u64> {
        let mut h = new_histogram(LATENCY_SIGNIFICANT_DIGITS);
        for i in 0..600u64 {
            h.saturating_record(100 + (i * 37) % 90_000);
        }
        h
    }

    #[test]
    fn encode_decode_round_trip() {
        let h = latencies();
        let decoded = decode_histogram(&encode_histogram(&h).expect("encodes")).expect("decodes");
        assert_eq!(decoded, h);
        assert_eq!(decoded.value_at_quantile(0.99), h.value_at_quantile(0.99));

        // Decoded histograms merge: two copies double every count and keep the percentiles.
        let encoded = encode_or_empty(&h);
        let mut doubled = decode_histogram(&encoded).expect("decodes");
        doubled
            .add(decode_histogram(&encoded).expect("decodes"))
            .expect("same configuration");
        assert_eq!(doubled.len(), 2 * h.len());
        assert_eq!(doubled.value_at_quantile(0.99), h.value_at_quantile(0.99));

        // An empty histogram round-trips too.
        let empty = new_histogram(LATENCY_SIGNIFICANT_DIGITS);
        assert!(decode_histogram(&encode_or_empty(&empty)).expect("decodes").is_empty());

        assert!(matches!(decode_histogram("not base64!"), Err(MetricsError::Base64(_))));
        assert!(matches!(
            decode_histogram("AAAAAAAA"),
            Err(MetricsError::Deserialize(_))
        ));
    }

    #[test]
    fn addition_is_exact_and_clamps_across_configurations() {
        let mut sum = latencies();
        add_histogram(&mut sum, &latencies());
        assert_eq!(sum.len(), 2 * latencies().len());
        assert_eq!(sum.max(), latencies().max());

        // A coarser histogram adds into a finer one bucket by bucket.
        let mut coarse = new_histogram(TIMELINE_SIGNIFICANT_DIGITS);
        coarse.saturating_record(5_000);
        let mut fine = new_histogram(LATENCY_SIGNIFICANT_DIGITS);
        add_histogram(&mut fine, &coarse);
        assert_eq!(fine.len(), 1);
        assert!(fine.max().abs_diff(5_000) <= 50, "{}", fine.max());
    }
}
