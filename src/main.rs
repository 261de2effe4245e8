// jemalloc rather than glibc's malloc: under a push-heavy load glibc's per-thread arenas keep
// freed memory (VmHWM 181 MiB against jemalloc's 149 MiB on berth-bench workload 9), and the
// whole-stream renders of watch events run faster (p50 29 -> 24 ms). See BENCHMARKS.md.
#[cfg(feature = "jemalloc")]
#[global_allocator]
static ALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's options, read before `main`: two arenas (the server runs a few busy threads, not
/// one per core), dirty pages returned after a second and never kept as "muzzy", by a
/// background thread so no request pays for the purge. `_RJEM_MALLOC_CONF` overrides it.
#[cfg(feature = "jemalloc")]
#[export_name = "_rjem_malloc_conf"]
pub static MALLOC_CONF: &[u8] =
    b"background_thread:true,narenas:2,dirty_decay_ms:1000,muzzy_decay_ms:0\0";

use clap::{Parser, Subcommand};

use berth::config::{Config, ServeArgs};

/// berth: a container registry with OpenShift image streams.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    #[command(flatten)]
    conn: berth::cli::ConnectionArgs,
}

#[derive(Subcommand)]
enum Command {
    /// Run the registry server.
    Serve(Box<ServeArgs>),
    /// Display image streams, image stream tags or images (like `oc get`).
    Get(berth::cli::GetArgs),
    /// Show the details of an image stream, tag or image (like `oc describe`).
    Describe(berth::cli::DescribeArgs),
    /// Import images from another registry into an image stream (like `oc import-image`).
    ImportImage(berth::cli::import::ImportImageArgs),
    /// Create objects: `-f FILE`, `imagestream`, `imagestreamtag`, `secret
    /// docker-registry|generic` (registry credentials).
    Create(berth::cli::create::CreateArgs),
    /// Create or update the objects of files (like `oc apply -f`).
    Apply(berth::cli::ApplyArgs),
    /// Delete image streams, tags, images or secrets (like `oc delete`).
    Delete(berth::cli::delete::DeleteArgs),
    /// Change settings of objects: `set image-lookup` (like `oc set`).
    Set(berth::cli::set::SetArgs),
    /// Tag existing images into image streams (like `oc tag`).
    Tag(berth::cli::TagArgs),
    /// Log in: store an access token for the server in the client config.
    Login(berth::cli::login::LoginArgs),
    /// Revoke the stored token and forget it.
    Logout,
    /// Print the user the client is authenticated as.
    Whoami,
    /// Administration: users, service accounts, tokens, role bindings.
    Adm(berth::cli::adm::AdmArgs),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let conn = cli.conn;
    match cli.command {
        Command::Serve(args) => serve(*args),
        Command::Get(args) => client_verb(conn, |c| berth::cli::get::run(c, &args)),
        Command::Describe(args) => client_verb(conn, |c| berth::cli::describe::run(c, &args)),
        Command::Tag(args) => client_verb(conn, |c| berth::cli::tag::run(c, &args)),
        Command::ImportImage(args) => client_verb(conn, |c| berth::cli::import::run(c, &args)),
        Command::Create(args) => client_verb(conn, |c| berth::cli::create::run(c, &args)),
        Command::Apply(args) => {
            client_verb(conn, |c| berth::cli::manifest::apply(c, &args.filename))
        }
        Command::Delete(args) => client_verb(conn, |c| berth::cli::delete::run(c, &args)),
        Command::Set(args) => client_verb(conn, |c| berth::cli::set::run(c, &args)),
        Command::Login(args) => client_verb(conn, |c| berth::cli::login::login(c, &args)),
        Command::Logout => client_verb(conn, berth::cli::login::logout),
        Command::Whoami => client_verb(conn, berth::cli::login::whoami),
        Command::Adm(args) => client_verb(conn, |c| berth::cli::adm::run(c, &args)),
    }
}

/// Resolves the connection (flags, environment, client config), runs the verb, prints.
fn client_verb(
    conn: berth::cli::ConnectionArgs,
    verb: impl FnOnce(&berth::cli::Connection) -> Result<String, berth::cli::CliError>,
) -> std::process::ExitCode {
    berth::cli::finish(conn.resolve().and_then(|c| verb(&c)))
}

fn serve(args: ServeArgs) -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        // Colour codes would break tools that read the log (tests look for `listening addr=`).
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let result = Config::load(&args).map_err(Into::into).and_then(|config| {
        tokio::runtime::Runtime::new()?.block_on(async {
            let server = berth::Server::bind(config).await?;
            server.run(berth::server::shutdown_signal()).await
        })
    });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("berth: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
