//! The `cairn` binary: parse arguments, run one command, map the outcome to an exit code.

mod cli;

fn main() {
    let code = match cli::run() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("cairn: error: {}", cli::describe(&e));
            cli::exit_code(&e)
        }
    };
    std::process::exit(code);
}
