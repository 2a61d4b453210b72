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
    /// Validate a configuration; exit 1 on errors.
    Check {
        #[arg(long)]
        config: PathBuf,
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
        Command::Check { config } => match portico_control::config::load(&config) {
            Ok(c) => {
                println!("{}: ok ({} hosts)", config.display(), c.hosts.len());
                ExitCode::SUCCESS
            }
            Err(errors) => {
                print_errors(&errors);
                ExitCode::FAILURE
            }
        },
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
