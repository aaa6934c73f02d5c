//! Who is at the other end of a loopback connection: the uid that owns the client's socket,
//! from the kernel's table of TCP sockets (`/proc/net/tcp`, `/proc/net/tcp6`).
//!
//! A `local-only` server lets a request without a token act as the installation's
//! identity; "from this machine" is not enough for that on a machine other people (or
//! services, or a reverse proxy) share, so the request must come from a process of the
//! user the server runs as, over a connection that is open while it is judged.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// The uid owning the socket whose local address is `peer` and remote address is `server`,
/// or `None` when the tables cannot be read or hold no such socket.
pub fn loopback_peer_uid(peer: SocketAddr, server: SocketAddr) -> Option<u32> {
    ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .find_map(|table| {
            let text = std::fs::read_to_string(table).ok()?;
            uid_in_table(&text, peer, server)
        })
}

/// The connection state the kernel prints for an open connection (`TCP_ESTABLISHED`).
const ESTABLISHED: &str = "01";

/// The uid column of the row of `table` for the open connection `peer` → `server`. Only an
/// established connection with a socket (inode) counts: a closed one lingers in TIME_WAIT,
/// where the kernel prints uid 0 for whoever owned it.
fn uid_in_table(table: &str, peer: SocketAddr, server: SocketAddr) -> Option<u32> {
    let (peer, server) = (plain(peer), plain(server));
    table.lines().skip(1).find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let local = parse_socket(fields.get(1)?)?;
        let remote = parse_socket(fields.get(2)?)?;
        let open = *fields.get(3)? == ESTABLISHED && fields.get(9).is_some_and(|i| *i != "0");
        (local == peer && remote == server && open).then(|| fields.get(7)?.parse().ok())?
    })
}

/// An IPv4 address mapped into IPv6 (`::ffff:127.0.0.1`) as the IPv4 one.
fn plain(addr: SocketAddr) -> SocketAddr {
    match addr.ip() {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => SocketAddr::new(IpAddr::V4(v4), addr.port()),
            None => addr,
        },
        IpAddr::V4(_) => addr,
    }
}

/// `0100007F:1F61` (IPv4) or 32 hex digits and a port (IPv6): the address as the kernel
/// prints it, each 32-bit word in the machine's byte order, the port in hex.
fn parse_socket(text: &str) -> Option<SocketAddr> {
    let (address, port) = text.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let word = |i: usize| -> Option<[u8; 4]> {
        let hex = address.get(i * 8..i * 8 + 8)?;
        Some(u32::from_str_radix(hex, 16).ok()?.to_ne_bytes())
    };
    let ip = match address.len() {
        8 => IpAddr::V4(Ipv4Addr::from(word(0)?)),
        32 => {
            let mut bytes = [0u8; 16];
            for i in 0..4 {
                bytes[i * 4..i * 4 + 4].copy_from_slice(&word(i)?);
            }
            IpAddr::V6(Ipv6Addr::from(bytes))
        }
        _ => return None,
    };
    Some(plain(SocketAddr::new(ip, port)))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_client_row_names_the_uid() {
        // Hex words are in this machine's byte order; build them as the kernel does.
        let hex4 = |ip: Ipv4Addr| format!("{:08X}", u32::from_ne_bytes(ip.octets()));
        let lo = Ipv4Addr::LOCALHOST;
        let table = format!(
            "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n\
             0: {lo}:1E61 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1\n\
             1: {lo}:C350 {lo}:1E61 01 00000000:00000000 00:00000000 00000000  1000        0 2 1\n\
             2: {lo}:1E61 {lo}:C350 01 00000000:00000000 00:00000000 00000000     0        0 3 1\n\
             3: {lo}:C351 {lo}:1E61 06 00000000:00000000 03:00001000 00000000     0        0 0 3\n\
             4: {lo}:C352 {lo}:1E61 08 00000000:00000000 00:00000000 00000000  1000        0 5 1\n",
            lo = hex4(lo)
        );
        let server: SocketAddr = "127.0.0.1:7777".parse().unwrap();
        let peer: SocketAddr = "127.0.0.1:50000".parse().unwrap();
        assert_eq!(uid_in_table(&table, peer, server), Some(1000));
        // A closed connection (TIME_WAIT: uid 0, no inode) or a closing one names no one.
        let closed: SocketAddr = "127.0.0.1:50001".parse().unwrap();
        assert_eq!(uid_in_table(&table, closed, server), None);
        let closing: SocketAddr = "127.0.0.1:50002".parse().unwrap();
        assert_eq!(uid_in_table(&table, closing, server), None);
        let other: SocketAddr = "127.0.0.1:50003".parse().unwrap();
        assert_eq!(uid_in_table(&table, other, server), None);
        // Seen through an IPv6 socket, the same connection.
        let mapped: SocketAddr = "[::ffff:127.0.0.1]:50000".parse().unwrap();
        assert_eq!(uid_in_table(&table, mapped, server), Some(1000));
        assert_eq!(parse_socket("nonsense"), None);
        assert_eq!(parse_socket("0100007F:zz"), None);
    }

    #[test]
    fn a_real_connection_is_found_with_this_processs_uid() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let server = listener.local_addr().unwrap();
        let client = std::net::TcpStream::connect(server).unwrap();
        let peer = client.local_addr().unwrap();
        let uid = nix::unistd::geteuid().as_raw();
        assert_eq!(loopback_peer_uid(peer, server), Some(uid));
    }
}
