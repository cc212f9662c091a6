//! inspectord: parse the command line, set up logging, dispatch each mode to one function, and
//! print errors with their chain.

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use inspectord::cli::{BridgeKind, Cli, Command};
use inspectord::commands::{self, EnrollOptions, ReplayOptions};
use inspectord::logging;
use inspectord::service::Notifier;

fn main() -> ExitCode {
    let cli = Cli::parse();
    logging::init(&cli.log, cli.log_format, std::io::stderr().is_terminal());
    let code = match dispatch(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let mut text = format!("inspectord: error: {}\n", e.to_string().trim());
            for cause in e.chain().skip(1) {
                text += &format!("  caused by: {}\n", cause.to_string().trim());
            }
            logging::eprint(&text);
            // Under systemd, `systemctl status` shows why the daemon stopped.
            if let Some(n) = Notifier::from_env() {
                n.status(&format!("failed: {e:#}"));
            }
            ExitCode::FAILURE
        }
    };
    logging::report_lost();
    code
}

fn dispatch(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Run { config } => commands::run(&config).map(drop),
        Command::Replay {
            config,
            images,
            labels,
            wait_clients,
        } => {
            let opts = ReplayOptions {
                images,
                labels,
                wait_clients,
            };
            commands::replay(&config, opts).map(drop)
        }
        Command::Check { config, mode } => {
            commands::check(&config, mode).map(|report| println!("{report}"))
        }
        Command::Enroll {
            config,
            images,
            out,
            false_reject_rate,
            max_references,
        } => {
            let opts = EnrollOptions {
                images,
                out,
                false_reject_rate,
                max_references: max_references.map(|n| usize::try_from(n).unwrap_or(usize::MAX)),
            };
            commands::enroll(&config, &opts).map(|report| println!("{report}"))
        }
        Command::Record { config, out, count } => {
            commands::record(&config, &out, count as usize).map(|report| println!("{report}"))
        }
        Command::Devices => commands::devices().map(|report| println!("{report}")),
        Command::Bridge {
            kind: BridgeKind::Modbus { config },
        } => commands::bridge_modbus(&config),
        Command::Gateway { config } => commands::gateway(&config),
        Command::Schema { which } => commands::schema(which),
    }
}
