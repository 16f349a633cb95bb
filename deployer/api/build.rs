//! Generates the control API's Rust code from proto/ at build time, with protox (a protobuf
//! compiler in Rust) instead of protoc, so a build needs nothing installed.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    let files = protox::compile(["berth/v1/control.proto"], ["proto"])?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(files)?;
    Ok(())
}
