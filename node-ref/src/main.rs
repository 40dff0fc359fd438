//! `x0tta6bl4`: the reference node. Thin by design: parse the configuration, assemble the node
//! from the SDK's parts, run it.

mod api;
mod assemble;
mod demo;
mod demo_governance;
mod demo_mesh;
mod demo_service;
mod gov;
mod incidents;
mod init;
mod keys;
mod model;
mod progress;
mod run;
mod systemd;
mod telemetry;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// Exit codes, as `--help` and the man page state them.
const EXIT_CODES: &str = "\
Exit codes:
  0  success
  1  the command failed; `error: …` on stderr says why (and `keys verify`: the signature is invalid)
  2  the command line is wrong (unknown command, missing or bad argument)";

#[derive(Parser)]
#[command(
    name = "x0tta6bl4",
    version,
    about = "Autonomic mesh node: monitor, analyze, plan, execute, remember",
    after_help = EXIT_CODES
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Write a node configuration, its directories, plan templates and keys.
    Init {
        /// Configuration file to write.
        #[arg(long, default_value = "node.yaml")]
        config: PathBuf,
        /// Node name (the last part of its SPIFFE id).
        #[arg(long, default_value = "node-1")]
        name: String,
        /// A nodes.json bootstrap list to reference from the configuration.
        #[arg(long)]
        bootstrap: Option<PathBuf>,
        /// Overwrite an existing configuration file.
        #[arg(long)]
        force: bool,
        /// Also write a hardened systemd unit for this node to this file.
        #[arg(long, value_name = "FILE")]
        systemd: Option<PathBuf>,
        /// The user the systemd unit runs the node as.
        #[arg(long, default_value = "x0tta6bl4", requires = "systemd")]
        user: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Print the hardened systemd unit for a node configuration (what `init --systemd` writes).
    SystemdUnit {
        /// Configuration file (made absolute).
        #[arg(long, default_value = "/var/lib/x0tta6bl4/node.yaml")]
        config: PathBuf,
        /// The user the node runs as.
        #[arg(long, default_value = "x0tta6bl4")]
        user: String,
        /// The binary (default: this one).
        #[arg(long)]
        bin: Option<PathBuf>,
    },
    /// Run the node until Ctrl-C / SIGTERM.
    Run {
        /// Configuration file.
        #[arg(long, default_value = "node.yaml")]
        config: PathBuf,
    },
    /// Show the state of the running node (through its API), or the state the last run left.
    Status {
        /// Configuration file.
        #[arg(long, default_value = "node.yaml")]
        config: PathBuf,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Print the HTTP API's OpenAPI 3.1 document (what `/api/v1/openapi.json` serves).
    Openapi {
        /// Print the Markdown reference (docs/API_REFERENCE.md) instead.
        #[arg(long)]
        markdown: bool,
    },
    /// Run a self-contained scenario on embedded defaults and print what the node does.
    Demo {
        /// Scenario.
        #[arg(value_enum, default_value_t = demo::Scenario::All)]
        scenario: demo::Scenario,
        /// Nodes in the governance (default 7) and mesh (default 5) scenarios.
        #[arg(long)]
        nodes: Option<usize>,
    },
    /// ML-DSA-65 keys and detached signatures (offline signing of policies and proposals).
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// The node's incidents: from the running node's API, else from its store.
    Incidents {
        /// Configuration file.
        #[arg(long, default_value = "node.yaml")]
        config: PathBuf,
        /// Print JSON (`list` and `search`; `show` always prints JSON).
        #[arg(long, global = true)]
        json: bool,
        #[command(subcommand)]
        command: IncidentsCommand,
    },
    /// Submit a proposal (the seed's YAML layout) to the running node, which signs and
    /// gossips it.
    Propose {
        /// Configuration file of the running node.
        #[arg(long, default_value = "node.yaml")]
        config: PathBuf,
        /// The proposal.
        file: PathBuf,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Cast this node's quadratic vote (N votes cost N² credits).
    #[command(group(clap::ArgGroup::new("side").required(true).args(["for_", "against"])))]
    Vote {
        /// Configuration file of the running node.
        #[arg(long, default_value = "node.yaml")]
        config: PathBuf,
        /// Proposal id (the CID `propose` and `proposals list` print).
        id: String,
        /// Number of votes.
        votes: u32,
        /// Vote for.
        #[arg(long = "for")]
        for_: bool,
        /// Vote against.
        #[arg(long)]
        against: bool,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Proposals the running node holds.
    Proposals {
        /// Configuration file of the running node.
        #[arg(long, default_value = "node.yaml")]
        config: PathBuf,
        /// Print JSON.
        #[arg(long, global = true)]
        json: bool,
        #[command(subcommand)]
        command: ProposalsCommand,
    },
    /// Export the knowledge base as a CARv1 file (pinnable on any IPFS node).
    ExportCar {
        /// Configuration file.
        #[arg(long, default_value = "node.yaml")]
        config: PathBuf,
        /// CAR file to write.
        #[arg(long)]
        out: PathBuf,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Import incidents from a CARv1 file; blocks that do not match their CID are refused.
    ImportCar {
        /// Configuration file.
        #[arg(long, default_value = "node.yaml")]
        config: PathBuf,
        /// CAR file to read.
        #[arg(long = "in")]
        input: PathBuf,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// The GraphSAGE patterns (`<storage>/patterns.bin`): train on the simulated mesh's
    /// labelled fault scenarios, show, export.
    Model {
        /// Configuration file (the storage directory and the signing key).
        #[arg(long, default_value = "node.yaml", global = true)]
        config: PathBuf,
        /// Print JSON.
        #[arg(long, global = true)]
        json: bool,
        #[command(subcommand)]
        command: ModelCommand,
    },
    /// Print a shell completion script (e.g. `x0tta6bl4 completions bash > /etc/bash_completion.d/x0tta6bl4`).
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff), or write one page per command into a directory.
    Man {
        /// Write x0tta6bl4.1 and x0tta6bl4-COMMAND.1 pages here (e.g. /usr/local/share/man/man1).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// The small HTTP service the demo supervises (internal).
    #[command(hide = true)]
    DemoService {
        /// Port on 127.0.0.1.
        #[arg(long)]
        port: u16,
    },
}

#[derive(Subcommand)]
enum ModelCommand {
    /// Train on the scenarios of some seeds, score on others, write the next version.
    Train {
        /// Scenario seeds to train on (8 scenarios each, one per fault), `A..B`.
        #[arg(long, default_value = "0..40", value_parser = seeds)]
        train_seeds: std::ops::Range<u64>,
        /// Seeds to score on, never trained on, `C..D`.
        #[arg(long, default_value = "1000..1010", value_parser = seeds)]
        test_seeds: std::ops::Range<u64>,
        /// Passes over the training scenarios.
        #[arg(long, default_value_t = 60)]
        epochs: usize,
    },
    /// What patterns.bin holds (after verifying its signature).
    Show,
    /// Write the verified weights as plain safetensors.
    Export {
        /// File to write.
        #[arg(long)]
        out: PathBuf,
    },
}

fn seeds(s: &str) -> Result<std::ops::Range<u64>, String> {
    x0tta_analysis::scenario::parse_seeds(s).map_err(|e| e.to_string())
}

#[derive(Subcommand)]
enum ProposalsCommand {
    /// Every proposal, newest first.
    List,
    /// One proposal, with its effectiveness report once in force.
    Show {
        /// Proposal id.
        id: String,
    },
}

#[derive(Subcommand)]
enum IncidentsCommand {
    /// The newest incidents.
    List {
        /// How many.
        #[arg(long, default_value_t = 20)]
        limit: usize,
    },
    /// One incident, as JSON.
    Show {
        /// Its content id (bafy…).
        id: String,
    },
    /// Incidents matching a text (BM25).
    Search {
        /// The text.
        text: String,
        /// How many hits.
        #[arg(long, default_value_t = 10)]
        limit: usize,
    },
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Generate a key pair: DIR/mldsa65.pk (raw FIPS 204) and DIR/mldsa65.sk (0600). With
    /// --spiffe, the whole node identity: also DIR/ed25519.sk, DIR/mlkem768.sk and the record
    /// DIR/identity.rec binding them, signed with both signature keys.
    Gen {
        /// Directory to write (created 0700 if missing; existing keys are never overwritten).
        #[arg(long)]
        out: PathBuf,
        /// SPIFFE id of the node (`spiffe://<trust-domain>/<name>`): write a full identity.
        #[arg(long)]
        spiffe: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Write the key pair as PKCS#8 (DIR/mldsa65.sk.pem, 0600; RFC 9881 expandedKey with the
    /// public key) and SPKI (DIR/mldsa65.pk.pem) for other tools.
    Export {
        /// Key directory.
        #[arg(long)]
        key: PathBuf,
        /// Directory to write into (default: the key directory).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Sign a file (detached signature, raw 3309 bytes).
    Sign {
        /// Key directory, its mldsa65.sk file, or a PKCS#8 PEM file.
        #[arg(long)]
        key: PathBuf,
        /// File to sign.
        #[arg(long = "in")]
        input: PathBuf,
        /// Signature file to write.
        #[arg(long)]
        out: PathBuf,
        /// FIPS 204 context string (default empty, as other FIPS 204 tools use).
        #[arg(long, default_value = "")]
        context: String,
    },
    /// Verify a detached signature; exits 1 if it is invalid.
    Verify {
        /// Public key file (raw 1952 bytes, SPKI DER or SPKI PEM).
        #[arg(long = "pub")]
        public: PathBuf,
        /// Signed file.
        #[arg(long = "in")]
        input: PathBuf,
        /// Signature file.
        #[arg(long)]
        sig: PathBuf,
        /// FIPS 204 context string used when signing.
        #[arg(long, default_value = "")]
        context: String,
    },
}

fn main() -> std::process::ExitCode {
    match real_main() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // One line an operator can act on: the error and its causes, no backtrace.
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn real_main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let quiet_default = matches!(
        cli.command,
        Command::Demo { .. } | Command::DemoService { .. }
    );
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new(if quiet_default { "error" } else { "info" })
    });
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        match cli.command {
            Command::Init {
                config,
                name,
                bootstrap,
                force,
                systemd,
                user,
                json,
            } => {
                let mut written = init::init(&config, &name, bootstrap, force)?;
                if let Some(unit) = systemd {
                    let bin = std::env::current_exe()?;
                    std::fs::write(&unit, systemd::unit(&config, &user, &bin)?)
                        .map_err(|e| anyhow::anyhow!("writing {}: {e}", unit.display()))?;
                    written.systemd = Some(unit);
                }
                if json {
                    println!("{}", serde_json::to_string(&written)?);
                } else {
                    written.print();
                }
                Ok(())
            }
            Command::SystemdUnit { config, user, bin } => {
                let bin = match bin {
                    Some(b) => b,
                    None => std::env::current_exe()?,
                };
                print!("{}", systemd::unit(&config, &user, &bin)?);
                Ok(())
            }
            Command::Run { config } => run::run(&config).await,
            Command::Status { config, json } => run::status(&config, json).await,
            Command::Completions { shell } => {
                let mut cmd = <Cli as clap::CommandFactory>::command();
                clap_complete::generate(shell, &mut cmd, "x0tta6bl4", &mut std::io::stdout());
                Ok(())
            }
            Command::Man { out } => {
                let cmd = <Cli as clap::CommandFactory>::command();
                match out {
                    Some(dir) => {
                        std::fs::create_dir_all(&dir)?;
                        clap_mangen::generate_to(cmd, &dir)?;
                        println!("man pages in {}", dir.display());
                    }
                    None => clap_mangen::Man::new(cmd).render(&mut std::io::stdout())?,
                }
                Ok(())
            }
            Command::Openapi { markdown } => {
                if markdown {
                    print!("{}", api::reference_markdown()?);
                } else {
                    println!("{}", api::openapi_json()?);
                }
                Ok(())
            }
            Command::Demo { scenario, nodes } => {
                let nodes = nodes.unwrap_or(if scenario == demo::Scenario::Mesh {
                    5
                } else {
                    7
                });
                demo::demo(scenario, nodes).await
            }
            Command::DemoService { port } => demo_service::serve(port).await,
            Command::Incidents {
                config,
                json,
                command,
            } => match command {
                IncidentsCommand::List { limit } => incidents::list(&config, limit, json).await,
                IncidentsCommand::Show { id } => incidents::show(&config, &id).await,
                IncidentsCommand::Search { text, limit } => {
                    incidents::search(&config, &text, limit, json).await
                }
            },
            Command::Propose { config, file, json } => gov::propose(&config, &file, json).await,
            Command::Vote {
                config,
                id,
                votes,
                for_,
                against: _,
                json,
            } => gov::vote(&config, &id, votes, for_, json).await,
            Command::Proposals {
                config,
                json,
                command,
            } => match command {
                ProposalsCommand::List => gov::list(&config, json).await,
                ProposalsCommand::Show { id } => gov::show(&config, &id, json).await,
            },
            Command::Model {
                config,
                json,
                command,
            } => match command {
                ModelCommand::Train {
                    train_seeds,
                    test_seeds,
                    epochs,
                } => tokio::task::spawn_blocking(move || {
                    model::train(&config, train_seeds, test_seeds, epochs, json)
                })
                .await
                .map_err(|e| anyhow::anyhow!("training stopped: {e}"))?,
                ModelCommand::Show => model::show(&config, json),
                ModelCommand::Export { out } => model::export(&config, &out, json),
            },
            Command::ExportCar { config, out, json } => {
                incidents::export_car(&config, &out, json).await
            }
            Command::ImportCar {
                config,
                input,
                json,
            } => incidents::import_car(&config, &input, json).await,
            Command::Keys { command } => match command {
                KeysCommand::Gen { out, spiffe, json } => match spiffe {
                    Some(id) => keys::generate_identity(&out, &id, json),
                    None => keys::generate(&out, json),
                },
                KeysCommand::Export { key, out } => keys::export(&key, out.as_deref()),
                KeysCommand::Sign {
                    key,
                    input,
                    out,
                    context,
                } => keys::sign(&key, &input, &out, &context),
                KeysCommand::Verify {
                    public,
                    input,
                    sig,
                    context,
                } => keys::verify(&public, &input, &sig, &context),
            },
        }
    })
}
