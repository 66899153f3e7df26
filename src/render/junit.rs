//! `compare --junit FILE`: the comparison as JUnit XML, the report format
//! CI systems show as tests. One `<testsuite>` per configuration, one
//! `<testcase>` per metric (classname the configuration), a `<failure>`
//! for each regression; a configuration on one side only is a skipped
//! case. Formats a [`Comparison`]; judges nothing itself.

use quick_xml::events::{BytesDecl, BytesEnd, BytesStart, BytesText, Event};
use quick_xml::Writer;

use crate::analysis::{Comparison, MetricComparison, Verdict};

/// The XML could not be written.
#[derive(Debug, thiserror::Error)]
#[error("writing JUnit XML: {0}")]
pub struct JunitError(String);

fn failed(error: impl std::fmt::Display) -> JunitError {
    JunitError(error.to_string())
}

/// The comparison as a JUnit XML document.
pub fn junit_xml(comparison: &Comparison) -> Result<String, JunitError> {
    let mut suites: Vec<(&str, Vec<&MetricComparison>)> = Vec::new();
    for metric in &comparison.metrics {
        match suites.iter_mut().find(|(name, _)| *name == metric.configuration) {
            Some((_, metrics)) => metrics.push(metric),
            None => suites.push((&metric.configuration, vec![metric])),
        }
    }
    let regressions =
        |metrics: &[&MetricComparison]| metrics.iter().filter(|m| m.verdict == Verdict::Regression).count();
    let total_failures: usize = suites.iter().map(|(_, m)| regressions(m)).sum();
    let total_tests = comparison.metrics.len() + comparison.unmatched.len();

    let mut w = Writer::new_with_indent(Vec::new(), b' ', 2);
    w.write_event(Event::Decl(BytesDecl::new("1.0", Some("UTF-8"), None)))
        .map_err(failed)?;
    let mut root = BytesStart::new("testsuites");
    root.push_attribute(("name", "contend compare"));
    root.push_attribute(("tests", total_tests.to_string().as_str()));
    root.push_attribute(("failures", total_failures.to_string().as_str()));
    root.push_attribute(("errors", "0"));
    w.write_event(Event::Start(root)).map_err(failed)?;
    for (configuration, metrics) in &suites {
        let mut suite = BytesStart::new("testsuite");
        suite.push_attribute(("name", *configuration));
        suite.push_attribute(("tests", metrics.len().to_string().as_str()));
        suite.push_attribute(("failures", regressions(metrics).to_string().as_str()));
        suite.push_attribute(("errors", "0"));
        suite.push_attribute(("skipped", "0"));
        w.write_event(Event::Start(suite)).map_err(failed)?;
        for metric in metrics {
            testcase(&mut w, metric, comparison.options.threshold)?;
        }
        w.write_event(Event::End(BytesEnd::new("testsuite"))).map_err(failed)?;
    }
    if !comparison.unmatched.is_empty() {
        let mut suite = BytesStart::new("testsuite");
        suite.push_attribute(("name", "configurations on one side only"));
        suite.push_attribute(("tests", comparison.unmatched.len().to_string().as_str()));
        suite.push_attribute(("failures", "0"));
        suite.push_attribute(("errors", "0"));
        suite.push_attribute(("skipped", comparison.unmatched.len().to_string().as_str()));
        w.write_event(Event::Start(suite)).map_err(failed)?;
        for configuration in &comparison.unmatched {
            let mut case = BytesStart::new("testcase");
            case.push_attribute(("name", configuration.as_str()));
            case.push_attribute(("classname", "unmatched"));
            w.write_event(Event::Start(case)).map_err(failed)?;
            let mut skipped = BytesStart::new("skipped");
            skipped.push_attribute(("message", "present in one run only: nothing to compare"));
            w.write_event(Event::Empty(skipped)).map_err(failed)?;
            w.write_event(Event::End(BytesEnd::new("testcase"))).map_err(failed)?;
        }
        w.write_event(Event::End(BytesEnd::new("testsuite"))).map_err(failed)?;
    }
    w.write_event(Event::End(BytesEnd::new("testsuites"))).map_err(failed)?;
    let mut xml = String::from_utf8(w.into_inner()).map_err(failed)?;
    xml.push('\n');
    Ok(xml)
}

/// What one metric did, in words: the means, the change and its interval.
fn summary(m: &MetricComparison) -> String {
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
    let interval = m.interval.map_or_else(
        || "no interval (one run per side)".to_string(),
        |(low, high)| format!("interval {:+.1}% to {:+.1}%", low * 100.0, high * 100.0),
    );
    format!(
        "{}: {:.3} {} (n={}) -> {:.3} {} (n={}), {:+.1}%, {interval}",
        m.metric,
        mean(&m.baseline),
        m.unit,
        m.baseline.len(),
        mean(&m.current),
        m.unit,
        m.current.len(),
        m.change * 100.0
    )
}

fn testcase(w: &mut Writer<Vec<u8>>, m: &MetricComparison, threshold: f64) -> Result<(), JunitError> {
    let mut case = BytesStart::new("testcase");
    case.push_attribute(("name", m.metric.as_str()));
    case.push_attribute(("classname", m.configuration.as_str()));
    w.write_event(Event::Start(case)).map_err(failed)?;
    if m.verdict == Verdict::Regression {
        let mut failure = BytesStart::new("failure");
        let message = format!(
            "{} regressed {:+.1}% (threshold {:.1}%)",
            m.metric,
            m.change * 100.0,
            threshold * 100.0
        );
        failure.push_attribute(("message", message.as_str()));
        failure.push_attribute(("type", "regression"));
        w.write_event(Event::Start(failure)).map_err(failed)?;
        w.write_event(Event::Text(BytesText::new(&summary(m))))
            .map_err(failed)?;
        w.write_event(Event::End(BytesEnd::new("failure"))).map_err(failed)?;
    } else {
        w.write_event(Event::Start(BytesStart::new("system-out")))
            .map_err(failed)?;
        w.write_event(Event::Text(BytesText::new(&summary(m))))
            .map_err(failed)?;
        w.write_event(Event::End(BytesEnd::new("system-out"))).map_err(failed)?;
    }
    w.write_event(Event::End(BytesEnd::new("testcase"))).map_err(failed)?;
    Ok(())
}
