//! `ouro-cloud serve` over TLS (rustls): a client that trusts the server's
//! certificate gets through; one that trusts another CA is refused; and the
//! server will not serve plaintext off loopback.

use std::path::PathBuf;
use std::process::Command;

use ouro_proto::v1;
use ouro_tests::cloud::{bin_path, CloudServer, TOKEN};
use ouro_tests::model_path;
use tonic::transport::{Certificate, ClientTlsConfig};

struct Pem {
    cert: String,
    key: String,
}

fn self_signed() -> Pem {
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).expect("certificate");
    Pem { cert: ck.cert.pem(), key: ck.signing_key.serialize_pem() }
}

fn write(name: &str, text: &str) -> PathBuf {
    let p = std::env::temp_dir().join(format!("ouro-tls-{}-{name}", std::process::id()));
    std::fs::write(&p, text).unwrap();
    p
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_accepts_the_right_ca_and_refuses_another() {
    let server_pem = self_signed();
    let (cert, key) = (write("cert.pem", &server_pem.cert), write("key.pem", &server_pem.key));
    // No --insecure-dev here: CloudServer's flag is overridden by giving TLS files.
    let srv = CloudServer::start_with(
        &model_path("smollm2-135m"),
        &["--tls-cert", cert.to_str().unwrap(), "--tls-key", key.to_str().unwrap()],
        false,
    );
    let endpoint = format!("https://localhost:{}", srv.addr.port());
    let trusted =
        ClientTlsConfig::new().ca_certificate(Certificate::from_pem(&server_pem.cert)).domain_name("localhost");
    let mut c = ouro_edge::link::connect(&endpoint, Some(TOKEN), Some(trusted)).await.expect("TLS connect");
    let info = c.info(v1::InfoRequest {}).await.expect("info over TLS").into_inner();
    assert_eq!(info.protocol_version, ouro_proto::PROTOCOL_VERSION);

    let stranger = self_signed();
    let untrusted =
        ClientTlsConfig::new().ca_certificate(Certificate::from_pem(&stranger.cert)).domain_name("localhost");
    let refused = match ouro_edge::link::connect(&endpoint, Some(TOKEN), Some(untrusted)).await {
        Err(_) => true,
        Ok(mut c) => c.info(v1::InfoRequest {}).await.is_err(),
    };
    assert!(refused, "a certificate from an untrusted CA was accepted");
    let _ = std::fs::remove_file(cert);
    let _ = std::fs::remove_file(key);
}

#[test]
fn plaintext_off_loopback_and_missing_tls_are_refused() {
    for args in [vec!["--insecure-dev", "--listen", "0.0.0.0:0"], vec!["--listen", "127.0.0.1:0"]] {
        let out = Command::new(bin_path("ouro-cloud"))
            .args(["serve", "--tokens", "t", "--metrics-listen", "127.0.0.1:0"])
            .args(&args)
            .arg("--model")
            .arg(model_path("smollm2-135m"))
            .output()
            .unwrap();
        assert!(!out.status.success(), "{args:?} started");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("TLS") || err.contains("loopback"), "{args:?}: {err}");
    }
}
