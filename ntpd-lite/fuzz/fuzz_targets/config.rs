//! ntpd-lite's configuration parser on arbitrary text: `Config::parse` (the TOML, every value's
//! own rules, the rules across tables) must never panic; an error must display as
//! `file:line:column: message` with a position inside the text and a message; and what it accepts
//! must hold the rules it promises (something to do, source addresses that read, min-sources
//! within reach) and survive what the daemon then derives from it.
//!
//! Only parsing is fuzzed: the host checks of `preflight` (the user lookup and the test binds)
//! take values parsing already typed, and would make a system call per input.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use ntpd_lite::config::{Config, ConfigError, SourceAddress, changed_sections};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match Config::parse(text, Path::new("fuzz.toml")) {
        Ok(config) => {
            assert!(config.server.is_some() || !config.sources.is_empty());
            for source in &config.sources {
                let read = SourceAddress::parse(&source.address);
                assert!(read.is_ok(), "{:?}: {read:?}", source.address);
            }
            assert!(config.sources.is_empty() || config.sync.min_sources <= config.most_sources());
            assert!(config.max_slew_ppm() > 0.0 && config.max_frequency_ppm() > 0.0);
            assert!(
                config
                    .control_socket()
                    .is_none_or(|p| !p.as_os_str().is_empty())
            );
            assert!(changed_sections(text, text).is_empty());
        }
        Err(error) => {
            let ConfigError::Invalid {
                line,
                column,
                message,
                ..
            } = &error
            else {
                panic!("parse read a file: {error}");
            };
            assert!(!message.is_empty(), "an error without a message");
            assert!(*line >= 1 && *column >= 1);
            assert!(
                *line <= text.matches('\n').count() + 1,
                "line {line} past the end"
            );
            assert_eq!(
                error.to_string(),
                format!("fuzz.toml:{line}:{column}: {message}")
            );
        }
    }
});
