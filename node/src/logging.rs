//! Log output: `tracing` to stderr, human-readable by default or JSON lines.
//!
//! rumqttd logs every connection at INFO and every disconnect at ERROR: it is silenced,
//! and rumqttc held at WARN, unless the filter (`log.level` or `KAIRAN_LOG`) names them.

use tracing_subscriber::EnvFilter;

/// Installs the global subscriber. `format` is `human` or `json`; `level` a tracing filter.
/// Does nothing if one is already installed (tests, the demo).
pub fn init(format: Option<&str>, level: Option<&str>) {
    let filter_text = std::env::var("KAIRAN_LOG")
        .ok()
        .or_else(|| level.map(str::to_owned))
        .unwrap_or_else(|| "info".into());
    // rumqttd logs every client disconnect at ERROR: silent unless the filter names it.
    let filter = EnvFilter::try_new(format!("rumqttd=off,rumqttc=warn,sled=warn,{filter_text}"))
        .unwrap_or_else(|_| EnvFilter::new("info,rumqttd=off,rumqttc=warn,sled=warn"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let _ = if format == Some("json") {
        builder.json().try_init()
    } else {
        builder.with_target(false).try_init()
    };
}
