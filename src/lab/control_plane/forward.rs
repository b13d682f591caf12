//! How knetdoctor (and kubectl) on this machine reach the lab's API server
//! without linking the lab to the root namespace: a forwarder listening on
//! 127.0.0.1 here whose outgoing connections are opened from inside the
//! master's namespace. No route, bridge or NAT joins the two; each
//! connection is two sockets copied into each other. It ends by itself when
//! the master's namespace is gone, so a crashed lab leaves no forwarder.

use std::io::Write as _;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::time::Duration;

use crate::dataplane::Netns;
use crate::error::{Error, Result};

/// Listens on `listen` (port 0: any free port), writes the port it got to
/// `port_file`, and forwards each connection to `to` from inside `netns`.
pub fn run(listen: SocketAddr, netns: &str, to: SocketAddr, port_file: &Path) -> Result<()> {
    if !listen.ip().is_loopback() {
        return Err(Error::usage(
            format!("the forwarder listens on the loopback only, not {listen}"),
            None,
        ));
    }
    let listener =
        TcpListener::bind(listen).map_err(|e| Error::env(format!("{listen}: {e}"), None))?;
    let port = listener
        .local_addr()
        .map_err(|e| Error::env(e.to_string(), None))?
        .port();
    let mut f = std::fs::File::create(port_file).map_err(|e| Error::io(port_file, e))?;
    write!(f, "{port}").map_err(|e| Error::io(port_file, e))?;
    drop(f);
    let ns = Netns::named(netns);
    let ns_file = ns.path();
    // Gone with the lab: checked every second.
    std::thread::spawn(move || {
        loop {
            std::thread::sleep(Duration::from_secs(1));
            if ns_file.as_ref().is_some_and(|p| !p.exists()) {
                std::process::exit(0);
            }
        }
    });
    for conn in listener.incoming() {
        let Ok(client) = conn else { continue };
        let ns = ns.clone();
        std::thread::spawn(move || {
            let upstream = ns.run(move || TcpStream::connect_timeout(&to, Duration::from_secs(5)));
            let Ok(Ok(upstream)) = upstream else {
                return;
            };
            let (Ok(mut c2), Ok(mut u2)) = (client.try_clone(), upstream.try_clone()) else {
                return;
            };
            let (mut c1, mut u1) = (client, upstream);
            let up = std::thread::spawn(move || {
                let _ = std::io::copy(&mut c1, &mut u1);
                let _ = u1.shutdown(std::net::Shutdown::Write);
            });
            let _ = std::io::copy(&mut u2, &mut c2);
            let _ = c2.shutdown(std::net::Shutdown::Write);
            let _ = up.join();
        });
    }
    Ok(())
}
