// protoc is not installed on the project's machines; the vendored binary makes a
// fresh checkout build without manual steps.
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    std::env::set_var("PROTOC", protoc);
    let protos = ["ouro/v1/model.proto", "ouro/v1/verifier.proto", "ouro/v1/quic.proto"];
    for p in protos {
        println!("cargo:rerun-if-changed={p}");
    }
    tonic_prost_build::configure().compile_protos(&protos, &["."])?;
    Ok(())
}
