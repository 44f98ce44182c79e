//! The kernel's count of handshakes dropped at full accept queues
//! (`TcpExt: ListenOverflows ListenDrops` of /proc/net/netstat). A client
//! whose handshake was dropped waits for the retransmission, about a
//! second, before the server sees its request at all: a refusal that took
//! a second is explained by these rising during the load. The counters are
//! the network namespace's, so other programs' listeners count too.

use serde::Serialize;

#[derive(Serialize, Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ListenCounters {
    pub listen_overflows: u64,
    pub listen_drops: u64,
}

impl ListenCounters {
    pub fn read() -> Option<Self> {
        parse(&std::fs::read_to_string("/proc/net/netstat").ok()?)
    }

    /// What happened between `self` and `later`.
    pub fn since(self, later: Self) -> Self {
        Self {
            listen_overflows: later.listen_overflows.saturating_sub(self.listen_overflows),
            listen_drops: later.listen_drops.saturating_sub(self.listen_drops),
        }
    }
}

fn parse(netstat: &str) -> Option<ListenCounters> {
    // Pairs of lines: `TcpExt: Name Name ...` then `TcpExt: 1 2 ...`.
    let mut rows = netstat.lines().filter(|l| l.starts_with("TcpExt:"));
    let (names, values) = (rows.next()?, rows.next()?);
    let field = |name: &str| {
        let i = names.split_whitespace().position(|n| n == name)?;
        values.split_whitespace().nth(i)?.parse().ok()
    };
    Some(ListenCounters { listen_overflows: field("ListenOverflows")?, listen_drops: field("ListenDrops")? })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_listen_counters() {
        let text = "TcpExt: SyncookiesSent ListenOverflows ListenDrops\nTcpExt: 0 13 14\nIpExt: InNoRoutes\nIpExt: 0\n";
        let c = parse(text).unwrap();
        assert_eq!((c.listen_overflows, c.listen_drops), (13, 14));
        let later = ListenCounters { listen_overflows: 20, listen_drops: 21 };
        assert_eq!(c.since(later), ListenCounters { listen_overflows: 7, listen_drops: 7 });
        assert!(parse("IpExt: x\nIpExt: 1\n").is_none());
    }
}
