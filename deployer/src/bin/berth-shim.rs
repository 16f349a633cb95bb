fn main() -> std::process::ExitCode {
    berth_deployer::shim::main()
}
