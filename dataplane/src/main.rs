//! The `portico` command: run, check, demo.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "portico",
    version,
    about = "Public-access box for PBX sites: reverse proxy and STUN/TURN"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the box.
    Run {
        #[arg(long)]
        config: PathBuf,
        /// Number of shards (default: one per CPU).
        #[arg(long)]
        shards: Option<usize>,
        /// Seconds a stop (SIGTERM/SIGINT) lets established connections finish.
        #[arg(long, default_value_t = 30.0)]
        grace: f64,
        /// Unix socket on which `portico reload` is accepted.
        #[arg(long)]
        control_socket: Option<PathBuf>,
    },
    /// Ask a running portico to re-read its configuration (like SIGHUP, but answers
    /// with the result).
    Reload {
        #[arg(long, default_value = "/run/portico/portico.sock")]
        control_socket: PathBuf,
    },
    /// Validate a configuration and lint it against the seed's advice; exit 1 on
    /// errors, 0 with warnings printed.
    Check {
        #[arg(long)]
        config: PathBuf,
        #[arg(long, value_enum, default_value_t = CheckFormat::Text)]
        format: CheckFormat,
    },
    /// Print what the rest of the site needs: the router's port forwardings, the
    /// official and internal DNS records, the certificate names.
    Plan {
        #[arg(long)]
        config: PathBuf,
        /// The router's public address (default: [proxy] public_nat_address).
        #[arg(long)]
        public_ip: Option<std::net::IpAddr>,
        /// portico's own address on the private network (default: from bind).
        #[arg(long)]
        box_ip: Option<std::net::IpAddr>,
        #[arg(long, value_enum, default_value_t = PlanFormat::Table)]
        format: PlanFormat,
    },
    /// The seed's reference topology on loopback, with stand-in targets.
    Demo {
        #[arg(long, default_value_t = 8090)]
        http_port: u16,
        #[arg(long, default_value_t = 8453)]
        https_port: u16,
        #[arg(long)]
        shards: Option<usize>,
    },
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum CheckFormat {
    Text,
    Json,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum PlanFormat {
    Table,
    Zone,
}

fn check(path: &std::path::Path, format: CheckFormat) -> ExitCode {
    use portico_control::lint::{self, Finding, Severity};
    let findings: Vec<Finding> = match portico_control::config::load(path) {
        Err(errors) => errors.iter().map(Finding::from_config_error).collect(),
        Ok(config) => {
            let text = std::fs::read_to_string(path).unwrap_or_default();
            lint::lint(&config, &text, std::time::SystemTime::now())
        }
    };
    let errors = findings
        .iter()
        .filter(|f| matches!(f.severity, Severity::Error))
        .count();
    match format {
        CheckFormat::Json => println!("{}", lint::to_json(&findings, path)),
        CheckFormat::Text => {
            for f in &findings {
                if matches!(f.severity, Severity::Error) {
                    eprintln!("{f}");
                } else {
                    println!("{f}");
                }
            }
            let warnings = findings.len() - errors;
            if errors == 0 {
                println!("{}: ok ({warnings} warning(s))", path.display());
            } else {
                eprintln!(
                    "{}: {errors} error(s), {warnings} warning(s)",
                    path.display()
                );
            }
        }
    }
    if errors == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn print_errors(errors: &[portico_control::config::ConfigError]) {
    for e in errors {
        eprintln!("error: {e}");
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Reload { control_socket } => {
            match portico_dataplane::runtime::request_reload(&control_socket) {
                Ok(reply) => {
                    print!("{reply}");
                    if reply.starts_with("ok") {
                        ExitCode::SUCCESS
                    } else {
                        ExitCode::FAILURE
                    }
                }
                Err(e) => {
                    eprintln!("error: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Run {
            config,
            shards,
            grace,
            control_socket,
        } => {
            let config = match portico_control::config::load(&config) {
                Ok(c) => c,
                Err(errors) => {
                    print_errors(&errors);
                    return ExitCode::from(2);
                }
            };
            if !(0.0..=86400.0).contains(&grace) {
                eprintln!("error: --grace must be between 0 and 86400 seconds");
                return ExitCode::FAILURE;
            }
            let options = portico_dataplane::runtime::RunOptions {
                shards,
                grace: std::time::Duration::from_secs_f64(grace),
                control_socket,
            };
            match portico_dataplane::runtime::run(config, options) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Check { config, format } => check(&config, format),
        Command::Plan {
            config,
            public_ip,
            box_ip,
            format,
        } => {
            let config = match portico_control::config::load(&config) {
                Ok(c) => c,
                Err(errors) => {
                    print_errors(&errors);
                    return ExitCode::FAILURE;
                }
            };
            let plan = portico_control::plan::plan(&config, public_ip, box_ip);
            match format {
                PlanFormat::Table => print!("{}", portico_control::plan::render_table(&plan)),
                PlanFormat::Zone => print!("{}", portico_control::plan::render_zone(&plan)),
            }
            ExitCode::SUCCESS
        }
        Command::Demo {
            http_port,
            https_port,
            shards,
        } => {
            let text = portico_dataplane::demo::config_text(http_port, https_port);
            let config = match portico_control::config::parse(std::path::Path::new("<demo>"), &text)
            {
                Ok(c) => c,
                Err(errors) => {
                    print_errors(&errors);
                    return ExitCode::FAILURE;
                }
            };
            if let Err(e) = portico_dataplane::demo::spawn_all() {
                eprintln!("error: {e:#}");
                return ExitCode::FAILURE;
            }
            println!("portico demo: the seed's reference topology on loopback");
            for b in portico_dataplane::demo::BOXES.iter() {
                println!(
                    "  {:<13} stand-in on {}:{} (http) and :{} (https)",
                    b.name,
                    b.ip,
                    portico_dataplane::demo::TARGET_HTTP,
                    portico_dataplane::demo::TARGET_HTTPS
                );
            }
            println!(
                "  portico       http on 127.0.0.1:{http_port}, https on 127.0.0.1:{https_port}\n"
            );
            println!(
                "{}",
                portico_dataplane::demo::try_lines(http_port, https_port)
            );
            let options = portico_dataplane::runtime::RunOptions {
                shards,
                grace: std::time::Duration::from_secs(5),
                control_socket: None,
            };
            match portico_dataplane::runtime::run(config, options) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}
