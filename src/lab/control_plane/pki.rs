//! The control-plane lab's PKI, made per lab with openssl as a cluster
//! administrator would (kubernetes-the-hard-way): a CA, the API server's
//! serving certificate, one client identity per component — the admin
//! (system:masters), the controller manager, kube-proxy, and one kubelet
//! identity per node (system:node:NAME, for the Node authorizer) — the
//! service-account signing key, and a kubeconfig per identity. P-256 keys:
//! the whole PKI takes a fraction of a second. Everything is 0600 in a 0700
//! directory.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::error::{Error, Result};

/// One client identity: its certificate's CN and O.
pub struct Identity<'a> {
    /// File stem (`admin`, `proxy`, `node-k8s-node-12`).
    pub file: &'a str,
    pub cn: &'a str,
    pub org: Option<&'a str>,
}

/// The lab's PKI directory.
pub struct Pki {
    pub dir: PathBuf,
}

fn openssl(dir: &Path, args: &[&str]) -> Result<()> {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| {
            Error::env(
                format!("cannot run openssl: {e}"),
                Some("apt-get install -y openssl".to_string()),
            )
        })?;
    if out.status.success() {
        Ok(())
    } else {
        Err(Error::Command {
            command: format!("openssl {}", args.join(" ")),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        })
    }
}

impl Pki {
    /// Makes the CA, the serving certificate for `api_ip` (and the
    /// `kubernetes` Service's `service_ip`, and 127.0.0.1 for the
    /// forwarder), the service-account key, and a certificate per identity.
    pub fn create(
        dir: &Path,
        api_ip: Ipv4Addr,
        service_ip: Ipv4Addr,
        identities: &[Identity],
    ) -> Result<Pki> {
        crate::files::private_dir(dir)?;
        let key = |name: &str| -> Result<()> {
            openssl(
                dir,
                &[
                    "genpkey",
                    "-algorithm",
                    "EC",
                    "-pkeyopt",
                    "ec_paramgen_curve:P-256",
                    "-out",
                    &format!("{name}.key"),
                ],
            )
        };
        key("ca")?;
        openssl(
            dir,
            &[
                "req",
                "-x509",
                "-new",
                "-key",
                "ca.key",
                "-subj",
                "/CN=knetdoctor-lab-ca",
                "-days",
                "30",
                "-out",
                "ca.crt",
            ],
        )?;
        let sign = |name: &str, subject: &str, ext: &str| -> Result<()> {
            key(name)?;
            crate::files::write_private(&dir.join(format!("{name}.ext")), ext.as_bytes())?;
            openssl(
                dir,
                &[
                    "req",
                    "-new",
                    "-key",
                    &format!("{name}.key"),
                    "-subj",
                    subject,
                    "-out",
                    &format!("{name}.csr"),
                ],
            )?;
            openssl(
                dir,
                &[
                    "x509",
                    "-req",
                    "-in",
                    &format!("{name}.csr"),
                    "-CA",
                    "ca.crt",
                    "-CAkey",
                    "ca.key",
                    "-CAcreateserial",
                    "-days",
                    "30",
                    "-extfile",
                    &format!("{name}.ext"),
                    "-out",
                    &format!("{name}.crt"),
                ],
            )
        };
        sign(
            "apiserver",
            "/CN=kube-apiserver",
            &format!(
                "subjectAltName=IP:{api_ip},IP:{service_ip},IP:127.0.0.1,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local\nextendedKeyUsage=serverAuth\n"
            ),
        )?;
        for id in identities {
            let subject = match id.org {
                Some(o) => format!("/CN={}/O={o}", id.cn),
                None => format!("/CN={}", id.cn),
            };
            sign(id.file, &subject, "extendedKeyUsage=clientAuth\n")?;
        }
        key("sa")?;
        openssl(dir, &["pkey", "-in", "sa.key", "-pubout", "-out", "sa.pub"])?;
        for entry in std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
            let p = entry.map_err(|e| Error::io(dir, e))?.path();
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600))
                .map_err(|e| Error::io(&p, e))?;
        }
        Ok(Pki {
            dir: dir.to_path_buf(),
        })
    }

    /// A file of the PKI.
    pub fn path(&self, file: &str) -> PathBuf {
        self.dir.join(file)
    }

    /// Writes a kubeconfig for identity `file` talking to `server`.
    pub fn kubeconfig(&self, file: &str, server: &str) -> Result<PathBuf> {
        let path = self.dir.join(format!("{file}.kubeconfig"));
        let text = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: lab\n  cluster:\n    server: {server}\n    certificate-authority: {ca}\nusers:\n- name: {file}\n  user:\n    client-certificate: {crt}\n    client-key: {key}\ncontexts:\n- name: lab\n  context:\n    cluster: lab\n    user: {file}\ncurrent-context: lab\n",
            ca = self.path("ca.crt").display(),
            crt = self.path(&format!("{file}.crt")).display(),
            key = self.path(&format!("{file}.key")).display(),
        );
        crate::files::write_private(&path, text.as_bytes())?;
        Ok(path)
    }
}
