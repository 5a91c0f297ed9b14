//! `postern`: the one binary. Exit status 0 on success, 1 on a runtime
//! failure, 2 on a usage or configuration error; errors are one sentence on
//! stderr.

use clap::{Args, Parser, Subcommand};
use postern::config::Config;
use postern::control::{self, ops, views, QueueFilter, Request, Response, Selector};
use std::io::{BufRead, IsTerminal};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// `println!` and `print!` that end the program quietly when standard output
/// is a closed pipe (`postern queue list | head`): the std macros panic there.
macro_rules! outln {
    ($($arg:tt)*) => {
        emit(format_args!("{}\n", format_args!($($arg)*)))
    };
}
macro_rules! out {
    ($($arg:tt)*) => {
        emit(format_args!($($arg)*))
    };
}

fn emit(args: std::fmt::Arguments) {
    use std::io::Write;
    if let Err(e) = std::io::stdout().lock().write_fmt(args) {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("postern: cannot write to standard output: {e}");
        std::process::exit(1);
    }
}

#[derive(Parser)]
#[command(name = "postern", version, about = "A mail server in one binary: SMTP MTA and relay, POP3, IMAP4, NNTP")]
struct Cli {
    /// Configuration file.
    #[arg(long, global = true, default_value = postern::config::DEFAULT_PATH)]
    config: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run every configured virtual server.
    Serve,
    /// Validate the configuration, certificates and paths; print a summary.
    CheckConfig,
    /// Inspect and steer the delivery queue.
    #[command(subcommand)]
    Queue(QueueCmd),
    /// Explain routing decisions.
    #[command(subcommand)]
    Route(RouteCmd),
    /// Manage mailbox users.
    #[command(subcommand)]
    User(UserCmd),
    /// Manage aliases.
    #[command(subcommand)]
    Alias(AliasCmd),
    /// Manage newsgroups.
    #[command(subcommand)]
    Group(GroupCmd),
    /// Make, request, install and inspect certificates.
    #[command(subcommand)]
    Cert(CertCmd),
    /// Re-read certificates in the running server without dropping sessions.
    Reload,
    /// A message's history from the tracking log, also after it left the queue.
    ///
    /// Reads data_dir/track directly (no running server needed) and creates
    /// nothing. Exit status: 0 with output; 1 when no message matches or
    /// there is no log; 2 for a usage error.
    Track(TrackArgs),
    /// TLS reports.
    #[command(subcommand)]
    Tls(TlsCmd),
}

#[derive(Subcommand)]
enum TlsCmd {
    /// TLS coverage per destination domain from the tracking log: sessions,
    /// messages, TLS, verified, plaintext fallbacks, failures by category.
    ///
    /// Reads data_dir/track directly (no running server needed) and creates nothing.
    Report {
        /// The last stretch of time counted, e.g. 24h, 7d.
        #[arg(long, value_name = "DURATION", value_parser = parse_since, default_value = "24h")]
        since: std::time::Duration,
        /// One JSON object per domain per line (documented in the README).
        #[arg(long)]
        json: bool,
    },
}

#[derive(Args)]
#[command(group(clap::ArgGroup::new("which").required(true).args(["id", "sender", "recipient"])))]
struct TrackArgs {
    /// The queue id (from the 250 reply, `queue list` or the logs); its NDRs are shown too.
    id: Option<String>,
    /// Every message from this sender (case-insensitive; `<>` for reports).
    #[arg(long)]
    sender: Option<String>,
    /// Every message to this recipient (case-insensitive).
    #[arg(long)]
    recipient: Option<String>,
    /// Only events of this last stretch of time, e.g. 2d, 4h (default: all that is kept).
    #[arg(long, value_name = "DURATION", value_parser = parse_since)]
    since: Option<std::time::Duration>,
    /// One JSON object per event per line (documented in the README).
    #[arg(long)]
    json: bool,
}

fn parse_since(s: &str) -> Result<std::time::Duration, String> {
    humantime::parse_duration(s).map_err(|_| format!("{s:?} is not a duration: write e.g. 30m, 4h or 2d"))
}

#[derive(Subcommand)]
enum CertCmd {
    /// Make a self-signed certificate and its key.
    SelfSigned {
        /// The host name it is for (the CN and the first name).
        #[arg(long)]
        hostname: String,
        /// Another name it is valid for (repeatable): host, *.domain or IP.
        #[arg(long = "san", value_name = "NAME")]
        sans: Vec<String>,
        /// ecdsa-p256, rsa2048 or rsa3072.
        #[arg(long, default_value = "ecdsa-p256")]
        key_type: postern::cert::KeyType,
        /// Where to write the certificate (PEM).
        #[arg(long, value_name = "FILE")]
        cert_out: PathBuf,
        /// Written mode 0600.
        #[arg(long, value_name = "FILE")]
        key_out: PathBuf,
        /// Replace output files that exist.
        #[arg(long)]
        force: bool,
    },
    /// Make a key and a PKCS#10 request to send to a CA; keep the key pending.
    Request {
        /// Common name: the host name clients connect to (also the first SAN).
        #[arg(long)]
        cn: String,
        /// Another name (repeatable): host, *.domain or IP.
        #[arg(long = "san", value_name = "NAME")]
        sans: Vec<String>,
        /// Organisation (O).
        #[arg(long)]
        org: Option<String>,
        /// Organisational unit (OU).
        #[arg(long)]
        org_unit: Option<String>,
        /// Two-letter country code.
        #[arg(long)]
        country: Option<String>,
        /// State or province (ST).
        #[arg(long)]
        state: Option<String>,
        /// Locality or city (L).
        #[arg(long)]
        locality: Option<String>,
        /// ecdsa-p256, rsa2048 or rsa3072.
        #[arg(long, default_value = "ecdsa-p256")]
        key_type: postern::cert::KeyType,
        /// Where to write the request (PEM).
        #[arg(long, value_name = "FILE")]
        csr_out: PathBuf,
        /// Written mode 0600.
        #[arg(long, value_name = "FILE")]
        key_out: PathBuf,
        /// Replace output files, and a request pending for the same CN.
        #[arg(long)]
        force: bool,
    },
    /// Check a certificate (from a CA) and store it under data_dir/tls/ as NAME.
    Install {
        /// The certificate's name in [tls.certificates.NAME].
        #[arg(long)]
        name: String,
        /// PEM chain, leaf first (or one DER certificate).
        #[arg(long, value_name = "FILE")]
        cert: PathBuf,
        /// PEM private key; default: the pending key of `cert request` that matches.
        #[arg(long, value_name = "FILE")]
        key: Option<PathBuf>,
    },
    /// Describe a certificate file, or a configured certificate by name.
    Show {
        /// A PEM or DER file, or a name from [tls.certificates].
        #[arg(value_name = "FILE|NAME")]
        target: String,
        /// Machine-readable output (documented in the README).
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum QueueCmd {
    /// One row per destination: count, oldest, next attempt, last error.
    Summary {
        /// Machine-readable output (documented in the README).
        #[arg(long)]
        json: bool,
    },
    /// One entry per message.
    List {
        /// Machine-readable output (documented in the README).
        #[arg(long)]
        json: bool,
        /// Only messages with a recipient for this destination (domain or smarthost).
        #[arg(long)]
        destination: Option<String>,
        /// Only messages with a recipient in this state.
        #[arg(long, value_parser = ["queued", "delivered", "failed", "expired", "deleted"])]
        state: Option<String>,
        /// Only messages from this sender (case-insensitive).
        #[arg(long)]
        sender: Option<String>,
        /// Only messages with this recipient (case-insensitive).
        #[arg(long)]
        recipient: Option<String>,
    },
    /// Envelope, recipients, attempts, TLS and headers of one message.
    Show {
        /// The queue id (from `queue list` or the 250 reply).
        id: String,
        /// Machine-readable output (documented in the README).
        #[arg(long)]
        json: bool,
    },
    /// Attempt delivery now.
    Retry(SelectArgs),
    /// Hold messages: no attempts and no expiry while frozen.
    Freeze(SelectArgs),
    /// Release frozen messages.
    Thaw(SelectArgs),
    /// Remove messages, silently or with an NDR to the sender.
    Delete {
        #[command(flatten)]
        select: SelectArgs,
        /// Send the sender a non-delivery report.
        #[arg(long)]
        ndr: bool,
    },
}

#[derive(Args)]
struct SelectArgs {
    /// Queue ids.
    ids: Vec<String>,
    /// Every message with a recipient for this destination.
    #[arg(long)]
    destination: Option<String>,
    /// Every message in the queue.
    #[arg(long)]
    all: bool,
}

impl From<SelectArgs> for Selector {
    fn from(a: SelectArgs) -> Selector {
        Selector { ids: a.ids, destination: a.destination, all: a.all }
    }
}

#[derive(Subcommand)]
enum RouteCmd {
    /// Which connector carries mail for ADDRESS, and why.
    Explain {
        /// The recipient address to route.
        address: String,
        /// The virtual server the mail arrives on (default: the first SMTP one).
        #[arg(long)]
        server: Option<String>,
        /// Machine-readable output (documented in the README).
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum UserCmd {
    /// Add a user (local@domain in a local domain); asks for the password.
    Add {
        /// The user's address, also the login name.
        email: String,
        /// Read the password from the first line of standard input.
        #[arg(long)]
        password_stdin: bool,
    },
    /// Set a user's password.
    Passwd {
        /// The user's address.
        email: String,
        /// Read the password from the first line of standard input.
        #[arg(long)]
        password_stdin: bool,
    },
    /// Remove a user (their mail stays on disk).
    Delete {
        /// The user's address.
        email: String,
    },
    /// List the users.
    List {
        /// Machine-readable output (documented in the README).
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum AliasCmd {
    /// Make ALIAS deliver to TARGET (repeat to add targets).
    Add { alias: String, target: String },
    /// Remove one target, or the whole alias.
    Delete { alias: String, target: Option<String> },
    /// List aliases and their targets (one alias, or all).
    List {
        /// Only this alias.
        alias: Option<String>,
        /// Machine-readable output (documented in the README).
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum GroupCmd {
    /// Create NEWSGROUP (posting allowed).
    Add {
        newsgroup: String,
        #[arg(long, default_value = "")]
        description: String,
    },
    /// Delete NEWSGROUP and the articles that are in no other group.
    Delete { newsgroup: String },
    /// Every newsgroup, or the one named.
    List {
        newsgroup: Option<String>,
        #[arg(long)]
        json: bool,
    },
}

/// A failure and its exit status.
struct Failure(u8, String);

type Outcome = Result<(), Failure>;

fn usage(msg: impl Into<String>) -> Failure {
    Failure(2, msg.into())
}
fn runtime(msg: impl Into<String>) -> Failure {
    Failure(1, msg.into())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure(code, msg)) => {
            eprintln!("postern: {msg}");
            ExitCode::from(code)
        }
    }
}

fn load(path: &Path) -> Result<Config, Failure> {
    Config::load(path).map_err(|e| usage(e.to_string()))
}

fn init_logging(config: &Config) {
    use tracing_subscriber::EnvFilter;
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(format!("postern={}", config.log.level)));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    let _ = match config.log.format {
        postern::config::LogFormat::Json => builder.json().try_init(),
        postern::config::LogFormat::Text => builder.try_init(),
    };
}

fn run(cli: Cli) -> Outcome {
    match cli.command {
        Command::Serve => {
            let config = load(&cli.config)?;
            init_logging(&config);
            postern::queue::fault::install_from_env().map_err(|e| runtime(e.to_string()))?;
            let rt = match config.server.worker_threads {
                1 => tokio::runtime::Builder::new_current_thread().enable_all().build(),
                0 => tokio::runtime::Builder::new_multi_thread().enable_all().build(),
                n => tokio::runtime::Builder::new_multi_thread().worker_threads(n).enable_all().build(),
            }
            .map_err(|e| runtime(format!("cannot start the runtime: {e}")))?;
            rt.block_on(postern::server::serve(config)).map_err(|e| runtime(e.to_string()))
        }
        Command::CheckConfig => check_config(&cli.config),
        Command::Route(RouteCmd::Explain { address, server, json }) => {
            let config = load(&cli.config)?;
            let ex =
                postern::routing::explain(&config, &address, server.as_deref()).map_err(|e| usage(e.to_string()))?;
            if json {
                outln!("{}", serde_json::to_string(&ex).unwrap_or_default());
            } else {
                out!("{ex}");
            }
            Ok(())
        }
        Command::Queue(q) => queue(&cli.config, q),
        Command::User(u) => user(&cli.config, u),
        Command::Alias(a) => alias(&cli.config, a),
        Command::Group(g) => group(&cli.config, g),
        Command::Cert(c) => cert(&cli.config, c),
        Command::Track(args) => track(&cli.config, args),
        Command::Tls(TlsCmd::Report { since, json }) => tls_report(&cli.config, since, json),
        Command::Reload => {
            let data = operate(&cli.config, Request::Reload)?;
            let report: postern::tls::ReloadReport = from_value(data)?;
            for name in &report.reloaded {
                outln!("certificate {name:?} reloaded");
            }
            if report.failed.is_empty() {
                return Ok(());
            }
            // each reason already names its certificate and file
            let why: Vec<&str> = report.failed.iter().map(|(_, why)| why.as_str()).collect();
            Err(runtime(format!("reload kept the old {}", why.join("; and the old "))))
        }
    }
}

/// Send a request to the running server, or run it on the store directly.
fn operate(config_path: &Path, req: Request) -> Result<serde_json::Value, Failure> {
    operate_or(config_path, req, runtime)
}

/// [`operate`], with the exit status of a refusal chosen by the caller.
fn operate_or(config_path: &Path, req: Request, refused: fn(String) -> Failure) -> Result<serde_json::Value, Failure> {
    let config = load(config_path)?;
    let socket = config.control_socket();
    let resp = match control::request(&socket, &req) {
        Ok(Some(resp)) => resp,
        Ok(None) if req.needs_server() => {
            return Err(runtime(format!("no server is running (nothing answers on {})", socket.display())))
        }
        Ok(None) => direct(&config, req)?,
        Err(e) => return Err(runtime(format!("control socket {}: {e}", socket.display()))),
    };
    match resp {
        Response { ok: true, data, .. } => Ok(data.unwrap_or(serde_json::Value::Null)),
        Response { error, .. } => Err(refused(error.unwrap_or_else(|| "the server refused the request".into()))),
    }
}

fn direct(config: &Config, req: Request) -> Result<Response, Failure> {
    if req.only_reads() && !config.server.data_dir.join("db").exists() {
        return Err(runtime(format!(
            "no server is running and there is no data directory at {} to read; is --config the server's configuration?",
            config.server.data_dir.display()
        )));
    }
    let data = postern::datadir::DataDir::open(&config.server.data_dir).map_err(|e| runtime(e.to_string()))?;
    let (queue, _) = postern::queue::QueueStore::open(&data.db, &data.path).map_err(|e| runtime(e.to_string()))?;
    let accounts = postern::auth::Accounts::open(&data.db).map_err(|e| runtime(e.to_string()))?;
    let settings = postern::server::news_settings(config);
    let (news, _) = postern::news::NewsStore::open(&data.db, &data.path, settings, postern::util::now_secs())
        .map_err(|e| runtime(e.to_string()))?;
    let tracker = postern::track::Tracker::from_config(config);
    let stores = ops::Stores { config, queue: &queue, accounts: &accounts, news: &news, tracker: &tracker };
    let resp = ops::execute(&stores, req);
    let _ = queue.flush();
    Ok(resp)
}

/// `queue list`: each message handed to `each` as it arrives from the
/// server (or as the store is walked when no server runs), so memory stays
/// flat however long the list.
fn list_streamed(config_path: &Path, filter: QueueFilter, mut each: impl FnMut(serde_json::Value)) -> Outcome {
    let config = load(config_path)?;
    let socket = config.control_socket();
    let req = Request::QueueList { filter, stream: true };
    match control::request_stream(&socket, &req, &mut each) {
        Ok(Some(Response { ok: true, .. })) => Ok(()),
        Ok(Some(Response { error, .. })) => {
            Err(runtime(error.unwrap_or_else(|| "the server refused the request".into())))
        }
        Err(e) => Err(runtime(format!("control socket {}: {e}", socket.display()))),
        Ok(None) => {
            let Request::QueueList { filter, .. } = req else { return Ok(()) };
            let (_data, queue) = open_queue(&config)?;
            ops::queue_list_each(&queue, &filter, |v| {
                match serde_json::to_value(&v) {
                    Ok(value) => each(value),
                    Err(e) => eprintln!("postern: message {}: {e}", v.id),
                }
                true
            })
            .map(|_| ())
            .map_err(|e| runtime(e.to_string()))
        }
    }
}

/// The queue store opened directly (no server runs), for reading.
fn open_queue(config: &Config) -> Result<(postern::datadir::DataDir, postern::queue::QueueStore), Failure> {
    if !config.server.data_dir.join("db").exists() {
        return Err(runtime(format!(
            "no server is running and there is no data directory at {} to read; is --config the server's configuration?",
            config.server.data_dir.display()
        )));
    }
    let data = postern::datadir::DataDir::open(&config.server.data_dir).map_err(|e| runtime(e.to_string()))?;
    let (queue, _) = postern::queue::QueueStore::open(&data.db, &data.path).map_err(|e| runtime(e.to_string()))?;
    Ok((data, queue))
}

fn print_json_lines(v: &serde_json::Value) {
    match v {
        serde_json::Value::Array(items) => {
            for i in items {
                outln!("{i}");
            }
        }
        other => outln!("{other}"),
    }
}

fn from_value<T: serde::de::DeserializeOwned>(v: serde_json::Value) -> Result<T, Failure> {
    serde_json::from_value(v).map_err(|e| runtime(format!("unexpected answer: {e}")))
}

fn queue(config: &Path, cmd: QueueCmd) -> Outcome {
    match cmd {
        QueueCmd::Summary { json } => {
            let data = operate(config, Request::QueueSummary)?;
            if json {
                print_json_lines(&data);
            } else {
                out!("{}", views::summary_table(&from_value::<Vec<views::SummaryRow>>(data)?));
            }
        }
        QueueCmd::List { json, destination, state, sender, recipient } => {
            let filter = QueueFilter { destination, state, sender, recipient };
            if json {
                list_streamed(config, filter, |item| outln!("{item}"))?;
            } else {
                // the first rows size the columns; the rest print as they come
                let mut table = views::ListTable::new(|text: &str| out!("{text}"));
                list_streamed(config, filter, |item| match serde_json::from_value::<views::MessageView>(item) {
                    Ok(m) => table.push(&m),
                    Err(e) => eprintln!("postern: unexpected answer: {e}"),
                })?;
                table.finish();
            }
        }
        QueueCmd::Show { id, json } => {
            let data = operate(config, Request::QueueShow { id })?;
            if json {
                outln!("{data}");
            } else {
                out!("{}", views::detail_text(&from_value(data)?));
            }
        }
        QueueCmd::Retry(s) => report_ids("retrying", operate(config, Request::QueueRetry { select: s.into() })?)?,
        QueueCmd::Freeze(s) => report_ids("frozen", operate(config, Request::QueueFreeze { select: s.into() })?)?,
        QueueCmd::Thaw(s) => report_ids("thawed", operate(config, Request::QueueThaw { select: s.into() })?)?,
        QueueCmd::Delete { select, ndr } => {
            report_ids("deleted", operate(config, Request::QueueDelete { select: select.into(), ndr })?)?
        }
    }
    Ok(())
}

/// `postern track`: reads the log files directly (a running server is not
/// needed) and creates nothing. No match is exit 1, as `grep` does, with
/// one sentence on stderr, so that scripts can test for it.
fn tls_report(config_path: &Path, since: std::time::Duration, json: bool) -> Outcome {
    use postern::tlsrpt::coverage::{self, Coverage};
    let config = load(config_path)?;
    let data_dir = &config.server.data_dir;
    if !data_dir.is_dir() {
        return Err(runtime(format!(
            "there is no data directory at {}; is --config the server's configuration?",
            data_dir.display()
        )));
    }
    let from = postern::util::now_secs().saturating_sub(since.as_secs());
    let mut c = Coverage::new();
    let dir = postern::track::log_dir(data_dir);
    postern::track::read::scan(&dir, Some(from), |e| c.add(&e)).map_err(|e| runtime(e.to_string()))?;
    let rows = c.rows();
    if json {
        for r in &rows {
            outln!("{}", serde_json::to_string(r).unwrap_or_default());
        }
    } else if rows.is_empty() {
        outln!("no outbound sessions in the last {}", humantime::format_duration(since));
    } else {
        out!("{}", coverage::table(&rows));
    }
    Ok(())
}

fn track(config_path: &Path, args: TrackArgs) -> Outcome {
    use postern::track::read::{self, Query};
    let config = load(config_path)?;
    let query = match (args.id, args.sender, args.recipient) {
        (Some(id), None, None) => {
            if id.is_empty() || id.len() > 64 || !id.bytes().all(|b| b.is_ascii_alphanumeric()) {
                return Err(usage(format!("{id:?} is not a queue id")));
            }
            Query::Id(id)
        }
        (None, Some(a), None) => Query::Sender(a),
        (None, None, Some(a)) => Query::Recipient(a),
        _ => return Err(usage("name one of: a queue id, --sender or --recipient")),
    };
    let data_dir = &config.server.data_dir;
    if !data_dir.is_dir() {
        return Err(runtime(format!(
            "there is no data directory at {}; is --config the server's configuration?",
            data_dir.display()
        )));
    }
    let since = args.since.map(|d| postern::util::now_secs().saturating_sub(d.as_secs()));
    let dir = postern::track::log_dir(data_dir);
    let found = read::search(&dir, &query, since).map_err(|e| runtime(e.to_string()))?;
    if found.is_empty() {
        let what = match &query {
            Query::Id(id) => format!("message {id}"),
            Query::Sender(a) => format!("message from {a}"),
            Query::Recipient(a) => format!("message to {a}"),
        };
        let window = args.since.map(|d| format!(" in the last {}", humantime::format_duration(d))).unwrap_or_default();
        return Err(runtime(format!("no {what} in the tracking log {}{window}", dir.display())));
    }
    if args.json {
        for e in found.iter().flat_map(|t| &t.events) {
            outln!("{}", serde_json::to_string(e).unwrap_or_default());
        }
    } else {
        out!("{}", read::timelines_text(&found));
    }
    Ok(())
}

fn report_ids(what: &str, data: serde_json::Value) -> Outcome {
    let ids: Vec<String> = from_value(data)?;
    if ids.is_empty() {
        outln!("no message changed");
    }
    for id in ids {
        outln!("{id}: {what}");
    }
    Ok(())
}

fn read_password(from_stdin: bool) -> Result<String, Failure> {
    if from_stdin {
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .map_err(|e| runtime(format!("cannot read standard input: {e}")))?;
        let pw = line.trim_end_matches(['\r', '\n']).to_string();
        if pw.is_empty() {
            return Err(usage("the password on standard input is empty"));
        }
        return Ok(pw);
    }
    if !std::io::stdin().is_terminal() {
        return Err(usage("standard input is not a terminal: use --password-stdin"));
    }
    let pw = rpassword::prompt_password("Password: ").map_err(|e| runtime(format!("cannot read the password: {e}")))?;
    let again = rpassword::prompt_password("Again: ").map_err(|e| runtime(format!("cannot read the password: {e}")))?;
    if pw != again {
        return Err(usage("the passwords do not match"));
    }
    if pw.is_empty() {
        return Err(usage("the password is empty"));
    }
    Ok(pw)
}

fn say(data: serde_json::Value) {
    match data {
        serde_json::Value::String(s) => outln!("{s}"),
        other => outln!("{other}"),
    }
}

fn user(config: &Path, cmd: UserCmd) -> Outcome {
    match cmd {
        UserCmd::Add { email, password_stdin } => {
            let password = read_password(password_stdin)?;
            say(operate(config, Request::UserAdd { email, password })?);
        }
        UserCmd::Passwd { email, password_stdin } => {
            let password = read_password(password_stdin)?;
            say(operate(config, Request::UserPasswd { email, password })?);
        }
        UserCmd::Delete { email } => say(operate(config, Request::UserDelete { email })?),
        UserCmd::List { json } => {
            let data = operate(config, Request::UserList)?;
            if json {
                print_json_lines(&data);
            } else {
                let users: Vec<postern::auth::UserInfo> = from_value(data)?;
                let rows: Vec<Vec<String>> =
                    users.iter().map(|u| vec![u.email.clone(), postern::util::rfc3339(u.created)]).collect();
                out!("{}", views::table(&["USER", "CREATED"], &rows));
            }
        }
    }
    Ok(())
}

fn alias(config: &Path, cmd: AliasCmd) -> Outcome {
    match cmd {
        // a refused alias (not a local domain, a loop) is a usage error
        AliasCmd::Add { alias, target } => say(operate_or(config, Request::AliasAdd { alias, target }, usage)?),
        AliasCmd::Delete { alias, target } => say(operate(config, Request::AliasDelete { alias, target })?),
        AliasCmd::List { alias, json } => {
            let data = operate(config, Request::AliasList { alias })?;
            if json {
                print_json_lines(&data);
            } else {
                let all: Vec<postern::auth::AliasInfo> = from_value(data)?;
                let rows: Vec<Vec<String>> = all.iter().map(|a| vec![a.alias.clone(), a.targets.join(", ")]).collect();
                out!("{}", views::table(&["ALIAS", "TARGETS"], &rows));
            }
        }
    }
    Ok(())
}

fn group(config: &Path, cmd: GroupCmd) -> Outcome {
    match cmd {
        // a refused name (invalid, taken) is a usage error
        GroupCmd::Add { newsgroup, description } => {
            say(operate_or(config, Request::GroupAdd { name: newsgroup, description }, usage)?)
        }
        GroupCmd::Delete { newsgroup } => say(operate(config, Request::GroupDelete { name: newsgroup })?),
        GroupCmd::List { newsgroup, json } => {
            let data = operate(config, Request::GroupList { name: newsgroup })?;
            if json {
                print_json_lines(&data);
            } else {
                out!("{}", views::group_table(&from_value::<Vec<views::GroupView>>(data)?));
            }
        }
    }
    Ok(())
}

fn cert(config: &Path, cmd: CertCmd) -> Outcome {
    use postern::cert;
    let now = postern::tls::certs::unix_now();
    let said = match cmd {
        CertCmd::SelfSigned { hostname, sans, key_type, cert_out, key_out, force } => {
            cert::self_signed(&cert::SelfSignedOptions { hostname, sans, key_type, cert_out, key_out, force })
        }
        CertCmd::Request { cn, sans, org, org_unit, country, state, locality, key_type, csr_out, key_out, force } => {
            cert::optional_config(config).and_then(|c| {
                let subject = cert::Subject { cn, sans, org, org_unit, country, state, locality };
                cert::request(&cert::RequestOptions { subject, key_type, csr_out, key_out, force }, c.as_ref())
            })
        }
        CertCmd::Install { name, cert: file, key } => {
            let config = load(config)?;
            cert::install(&cert::InstallOptions { name, cert: file, key }, &config, now)
        }
        CertCmd::Show { target, json } => {
            cert::optional_config(config).and_then(|c| cert::show(&target, c.as_ref(), json, now))
        }
    }
    .map_err(|e| Failure(e.status, e.message))?;
    out!("{said}");
    Ok(())
}

fn check_config(path: &Path) -> Outcome {
    let config = load(path)?;
    let mut problems = Vec::new();
    let mut cert_lines = Vec::new();
    // the account the server becomes after binding (keys are re-read as it)
    let run_as = match &config.server.user {
        Some(u) => Some(
            postern::privileges::lookup(u, config.server.group.as_deref())
                .map_err(|e| usage(format!("{}: {e}", path.display())))?,
        ),
        None => None,
    };
    for (name, c) in &config.tls.certificates {
        if c.self_signed_if_missing && !c.cert.exists() && !c.key.exists() {
            cert_lines.push(format!("  {name}: {} (self-signed, generated on first start)", c.cert.display()));
            continue;
        }
        match postern::tls::certs::load_pair(name, &c.cert, &c.key) {
            Ok(l) => {
                let days = l.days_left(postern::tls::certs::unix_now());
                cert_lines.push(format!(
                    "  {name}: {} names {} ({days} days left)",
                    c.cert.display(),
                    l.dns_names.join(", ")
                ));
                if days < 0 {
                    cert_lines.push(format!("    warning: certificate {name:?} has expired"));
                } else if days < 30 {
                    cert_lines.push(format!("    warning: certificate {name:?} expires in {days} days"));
                }
                if !l.covers(&config.server.hostname) {
                    cert_lines
                        .push(format!("    warning: certificate {name:?} does not name {}", config.server.hostname));
                }
                if let Some(account) = &run_as {
                    for file in [&c.cert, &c.key] {
                        if !postern::privileges::can_read(file, account) {
                            cert_lines.push(format!(
                                "    warning: {} is not readable by user {:?}; postern reload would keep the old certificate",
                                file.display(),
                                account.user
                            ));
                        }
                    }
                }
            }
            Err(e) => problems.push(e.to_string()),
        }
    }
    let dd = &config.server.data_dir;
    if dd.exists() && !dd.is_dir() {
        problems.push(format!("server.data_dir {} exists and is not a directory", dd.display()));
    }
    if let Some(p) = problems.first() {
        return Err(usage(format!("{}: {p}", path.display())));
    }
    outln!("{}: OK", path.display());
    for w in config.warnings() {
        outln!("warning: {w}");
    }
    outln!("hostname:      {}", config.server.hostname);
    outln!("data_dir:      {}", dd.display());
    outln!("local domains: {}", list_or_dash(&config.server.local_domains));
    outln!("relay domains: {}", list_or_dash(&config.server.relay_domains));
    outln!("postmaster:    {}", config.server.postmaster);
    match &config.metrics.listen {
        Some(l) => outln!("metrics:       http://{l}/metrics"),
        None => outln!("metrics:       -"),
    }
    let kept = match config.log.tracking_retention() {
        Some(_) => format!("kept {}", config.log.tracking_retention),
        None => "kept forever".into(),
    };
    outln!("tracking log:  {} ({kept})", postern::track::log_dir(dd).display());
    outln!("virtual servers:");
    let rows: Vec<Vec<String>> = config
        .virtual_servers
        .iter()
        .map(|v| {
            vec![
                v.name.clone(),
                v.protocol.to_string(),
                v.listen.join(" "),
                format!("{:?}", v.tls).to_lowercase() + if v.require_tls { " (required)" } else { "" },
                // POP3, IMAP and NNTP always have their login; `auth` is SMTP's
                if v.protocol == postern::config::Protocol::Smtp {
                    format!("{:?}", v.auth).to_lowercase()
                } else {
                    "login".to_string()
                },
                list_or_dash(&v.certificates),
            ]
        })
        .collect();
    for line in views::table(&["  NAME", "PROTOCOL", "LISTEN", "TLS", "AUTH", "CERTIFICATES"], &indent(rows)).lines() {
        outln!("{line}");
    }
    if !config.connectors.is_empty() {
        outln!("connectors:");
        let rows: Vec<Vec<String>> = config
            .connectors
            .iter()
            .map(|c| {
                vec![
                    c.name.clone(),
                    c.address_spaces.iter().map(|a| a.to_string()).collect::<Vec<_>>().join(" "),
                    c.cost.to_string(),
                    c.tls.to_string(),
                    c.smarthost.clone().unwrap_or_else(|| "MX".into()),
                ]
            })
            .collect();
        for line in views::table(&["  NAME", "ADDRESS SPACES", "COST", "TLS", "NEXT HOP"], &indent(rows)).lines() {
            outln!("{line}");
        }
    }
    if !cert_lines.is_empty() {
        outln!("certificates:");
        for l in cert_lines {
            outln!("{l}");
        }
    }
    Ok(())
}

fn indent(mut rows: Vec<Vec<String>>) -> Vec<Vec<String>> {
    for r in &mut rows {
        if let Some(first) = r.first_mut() {
            *first = format!("  {first}");
        }
    }
    rows
}

fn list_or_dash(v: &[String]) -> String {
    if v.is_empty() {
        "-".into()
    } else {
        v.join(", ")
    }
}
