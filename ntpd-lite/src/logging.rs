//! Logging: `tracing` to stderr through an env filter that can be replaced while running (SIGHUP).
//!
//! The filter comes from, in order: `RUST_LOG` if set, `--log-level` if given, `[observability]
//! log-level` in the configuration, else `info`. Only the configuration's value can change on
//! SIGHUP; the first two are the operator's explicit choice for this run.

use tracing::{info, warn};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Registry, reload};

/// The filter used when nothing else is said.
pub const DEFAULT_FILTER: &str = "info";

/// Where the filter in force came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FilterSource {
    /// The `RUST_LOG` environment variable.
    Environment,
    /// The `--log-level` flag.
    CommandLine,
    /// `[observability] log-level`, or the default: follows the configuration on SIGHUP.
    Configuration,
}

/// A log filter that could not be used.
#[derive(Debug, thiserror::Error)]
#[error("{origin} {text:?} is not a log filter: {reason}")]
pub struct FilterError {
    origin: &'static str,
    text: String,
    reason: String,
}

/// The installed logger: changes its filter on request.
#[derive(Debug)]
pub struct Logger {
    handle: reload::Handle<EnvFilter, Registry>,
    source: FilterSource,
    current: String,
}

/// Picks the filter text by precedence: `RUST_LOG`, then the flag, then the configuration.
pub fn choose(
    environment: Option<String>,
    flag: Option<&str>,
    config: Option<&str>,
) -> (String, FilterSource) {
    match (environment.filter(|e| !e.trim().is_empty()), flag, config) {
        (Some(env), _, _) => (env, FilterSource::Environment),
        (None, Some(flag), _) => (flag.to_owned(), FilterSource::CommandLine),
        (None, None, config) => (
            config.unwrap_or(DEFAULT_FILTER).to_owned(),
            FilterSource::Configuration,
        ),
    }
}

impl Logger {
    /// Installs the global subscriber with `text` as its filter.
    pub fn install(text: &str, source: FilterSource) -> Result<Self, FilterError> {
        let filter = parse(text, source)?;
        let (filter, handle) = reload::Layer::new(filter);
        let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
        tracing_subscriber::registry()
            .with(filter)
            .with(
                tracing_subscriber::fmt::layer()
                    .with_writer(std::io::stderr)
                    .with_ansi(ansi),
            )
            .init();
        Ok(Self {
            handle,
            source,
            current: text.to_owned(),
        })
    }

    /// Applies the configuration's `log-level` after a reload, unless `RUST_LOG` or
    /// `--log-level` fixed the filter for this run.
    pub fn reconfigure(&mut self, config: Option<&str>) {
        let wanted = config.unwrap_or(DEFAULT_FILTER);
        if wanted == self.current {
            return;
        }
        if self.source != FilterSource::Configuration {
            warn!(
                configured = wanted,
                in_force = %self.current,
                "log-level changed in the configuration but RUST_LOG or --log-level takes precedence; not changed"
            );
            return;
        }
        let result = parse(wanted, self.source)
            .map_err(|e| e.to_string())
            .and_then(|filter| self.handle.reload(filter).map_err(|e| e.to_string()));
        match result {
            Ok(()) => {
                info!(from = %self.current, to = wanted, "log level changed");
                self.current = wanted.to_owned();
            }
            Err(e) => warn!(error = %e, "log level not changed"),
        }
    }
}

fn parse(text: &str, source: FilterSource) -> Result<EnvFilter, FilterError> {
    crate::config::parse_log_filter(text).map_err(|e| FilterError {
        origin: match source {
            FilterSource::Environment => "RUST_LOG",
            FilterSource::CommandLine => "--log-level",
            FilterSource::Configuration => "log-level",
        },
        text: text.to_owned(),
        reason: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rust_log_beats_the_flag_which_beats_the_configuration() {
        let env = || Some("trace".to_owned());
        assert_eq!(
            choose(env(), Some("debug"), Some("warn")),
            ("trace".to_owned(), FilterSource::Environment)
        );
        assert_eq!(
            choose(None, Some("debug"), Some("warn")),
            ("debug".to_owned(), FilterSource::CommandLine)
        );
        assert_eq!(
            choose(Some("  ".to_owned()), None, Some("warn")),
            ("warn".to_owned(), FilterSource::Configuration)
        );
        assert_eq!(
            choose(None, None, None),
            (DEFAULT_FILTER.to_owned(), FilterSource::Configuration)
        );
    }

    #[test]
    fn rust_log_and_the_flag_are_read_like_the_configuration() {
        // tracing-subscriber alone panics on this one; see config::parse_log_filter.
        for source in [FilterSource::Environment, FilterSource::CommandLine] {
            let filter = parse("warn, ntpd_lite=debug, \u{5d0}x", source).expect("filter");
            assert!(filter.to_string().contains("ntpd_lite=debug"), "{filter}");
        }
    }

    #[test]
    fn a_bad_filter_names_where_it_came_from() {
        let error = parse("info,=x=y", FilterSource::CommandLine).expect_err("invalid");
        assert!(error.to_string().starts_with("--log-level"), "{error}");
    }
}
