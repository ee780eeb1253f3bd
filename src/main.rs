fn main() {
    std::process::exit(latdiff::cli::main());
}
