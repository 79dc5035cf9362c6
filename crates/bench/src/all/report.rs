//! The report of `pairgate bench all`: the figures beside nginx's with
//! their ratios and the crypto ceiling, as text and as JSON.

use serde_json::{Value, json};

use super::{AllArgs, Figures};
use crate::humanize;
use crate::load::{self, Idle, Run};
use crate::procs;
use crate::revocation::KINDS;

/// The figures with the ceiling, as text and JSON.
pub(super) struct Report<'a> {
    pub(super) args: &'a AllArgs,
    pub(super) pinning: bool,
    pub(super) cpus: usize,
    pub(super) figures: Figures,
    /// `openssl speed`: P-256 sign/s, verify/s, X25519/s.
    pub(super) speed: (f64, f64, f64),
}

fn ratio(ours: f64, theirs: f64) -> Option<f64> {
    (ours > 0.0 && theirs > 0.0).then(|| ours / theirs)
}

fn times(r: Option<f64>) -> String {
    r.map_or_else(|| "–".to_owned(), |r| format!("{r:.2}×"))
}

fn ms(v: Option<f64>) -> String {
    v.map_or_else(|| "–".to_owned(), |v| format!("{v:.2}"))
}

impl Report<'_> {
    /// Server-side public-key work of one full mutual TLS 1.3 handshake
    /// with X25519: one P-256 signature, one verification, two X25519
    /// scalar multiplications (key share and shared secret).
    fn ceiling(&self) -> f64 {
        let (sign, verify, x25519) = self.speed;
        1.0 / (1.0 / sign + 1.0 / verify + 2.0 / x25519)
    }

    /// The report for people.
    pub(super) fn text(&self) -> String {
        let mut t = self.header();
        self.comparison(&mut t);
        self.wall_clock(&mut t);
        self.sustained(&mut t);
        self.revocation(&mut t);
        self.crypto(&mut t);
        t
    }

    fn header(&self) -> String {
        let a = self.args;
        format!(
            "pairgate bench all: {} per case on {} ({} CPUs); {}\n\n",
            humanize(a.duration),
            procs::cpu_model(),
            self.cpus,
            if self.pinning {
                format!(
                    "servers on CPU {}, load generator on CPU {}",
                    a.server_cpu, a.client_cpu
                )
            } else if self.cpus < 2 {
                "not pinned (one CPU)".to_owned()
            } else {
                "not pinned (--server-cpu equals --client-cpu)".to_owned()
            }
        )
    }

    /// The table of pairgate beside nginx, per server CPU-second.
    fn comparison(&self, t: &mut String) {
        let f = &self.figures;
        t.push_str(&format!(
            "{:<58} {:>12} {:>12} {:>8}\n",
            "per server CPU-second", "pairgate", "nginx", "ratio"
        ));
        let kept_alive = format!("kept-alive requests, {} connections", self.args.connections);
        let proxied = format!(
            "  same, proxied /app/… to an nginx upstream ({} conns)",
            self.args.connections
        );
        for (label, ours, theirs) in [
            (
                "full mTLS handshake + 1 request + close",
                &f.full,
                &f.full_nginx,
            ),
            (
                "  same, X25519 only (nginx's OpenSSL 3.0 has no ML-KEM)",
                &f.full_classical,
                &f.full_nginx,
            ),
            (
                "resumed handshake + 1 request + close",
                &f.resumed,
                &f.resumed_nginx,
            ),
            (kept_alive.as_str(), &f.kept_alive, &f.kept_alive_nginx),
            (proxied.as_str(), &f.proxy.pairgate, &f.proxy.nginx),
        ] {
            let (o, n) = (ours.per_server_cpu_second(), theirs.per_server_cpu_second());
            t.push_str(&format!(
                "{label:<58} {o:>12.0} {n:>12.0} {:>8}\n",
                times(ratio(o, n))
            ));
        }
        let latency = |run: &Run| {
            format!(
                "{} / {}",
                ms(run.latency_ms(50.0)),
                ms(run.latency_ms(99.0))
            )
        };
        t.push_str(&format!(
            "{:<58} {:>12} {:>12}\n",
            "kept-alive latency p50 / p99 (ms)",
            latency(&f.kept_alive),
            latency(&f.kept_alive_nginx),
        ));
        let kib = |i: &Idle| i.bytes_per_connection() / 1024.0;
        t.push_str(&format!(
            "{:<58} {:>12.1} {:>12.1} {:>8}\n",
            format!("KiB per idle mTLS connection ({} held)", f.idle.connections),
            kib(&f.idle),
            kib(&f.idle_nginx),
            times(ratio(kib(&f.idle), kib(&f.idle_nginx))),
        ));
        t.push_str(&format!(
            "{:<58} {:>12.0}\n",
            "gate pairing requests (handshake + POST /v1/pairing)",
            f.gate.per_server_cpu_second()
        ));
    }

    /// Each run's wall-clock rate, CPU and errors.
    fn wall_clock(&self, t: &mut String) {
        let f = &self.figures;
        t.push_str("\nwall-clock rates (the load generator's single core is often the limit)\n");
        for (label, run) in [
            ("full handshakes, pairgate", &f.full),
            ("full handshakes, pairgate X25519", &f.full_classical),
            ("full handshakes, nginx", &f.full_nginx),
            ("resumed, pairgate", &f.resumed),
            ("resumed, nginx", &f.resumed_nginx),
            ("kept-alive, pairgate", &f.kept_alive),
            ("kept-alive, nginx", &f.kept_alive_nginx),
            ("proxied, pairgate", &f.proxy.pairgate),
            ("proxied, nginx", &f.proxy.nginx),
            ("proxied, pairgate, sustained", &f.proxy.sustained),
            ("gate pairing requests", &f.gate),
        ] {
            t.push_str(&format!(
                "  {label:<34} {:>9.0}/s  server CPU {:>5.1}s  client CPU {:>5.1}s  {} errors  {}\n",
                run.per_second(),
                run.server_cpu.as_secs_f64(),
                run.client_cpu.as_secs_f64(),
                run.errors,
                run.negotiated,
            ));
            if let Some(e) = &run.first_error {
                t.push_str(&format!("    first error: {e}\n"));
            }
        }
    }

    /// The sustained proxy run's errors and the sockets it left.
    fn sustained(&self, t: &mut String) {
        let p = &self.figures.proxy;
        t.push_str(&format!(
            "\nsustained proxy run, {}: {} requests, {} errors; TIME_WAIT sockets towards the upstream: {} after it ({} after pairgate's run, {} after nginx's)\n",
            humanize(p.sustained_for),
            p.sustained.ok,
            p.sustained.errors,
            p.time_wait[2],
            p.time_wait[0],
            p.time_wait[1],
        ));
    }

    fn revocation(&self, t: &mut String) {
        let f = &self.figures;
        t.push_str(&format!(
            "\nunpair-to-reject, two instances on {} ({} rounds, clock from the unpair call)\n",
            f.database, self.args.rounds
        ));
        for (i, kind) in KINDS.iter().enumerate() {
            t.push_str(&format!(
                "  {kind:<12} p50 {:>7} ms  p99 {:>7} ms  max {:>7} ms  ({} samples, {} never refused)\n",
                ms(f.revocation.ms(i, 50.0)),
                ms(f.revocation.ms(i, 99.0)),
                ms(f.revocation.ms(i, 100.0)),
                f.revocation.samples_us.get(i).map_or(0, Vec::len),
                f.revocation.timeouts.get(i).copied().unwrap_or(0),
            ));
        }
    }

    fn crypto(&self, t: &mut String) {
        let f = &self.figures;
        let (sign, verify, x25519) = self.speed;
        let ceiling = self.ceiling();
        t.push_str(&format!(
            "\nopenssl speed (same machine, same run): P-256 sign {sign:.0}/s, verify {verify:.0}/s, X25519 {x25519:.0}/s\n\
             crypto ceiling: {ceiling:.0} full handshakes per server CPU-second (1 sign + 1 verify + 2 X25519)\n\
             pairgate X25519 full handshakes reach {:.0}% of it, nginx {:.0}%\n",
            100.0 * f.full_classical.per_server_cpu_second() / ceiling,
            100.0 * f.full_nginx.per_server_cpu_second() / ceiling,
        ));
    }

    /// The report for programs.
    pub(super) fn json(&self) -> Value {
        let f = &self.figures;
        let a = self.args;
        let pair = |ours: &Run, theirs: &Run| {
            json!({
                "pairgate": ours.to_json(),
                "nginx": theirs.to_json(),
                "ratio_per_server_cpu_second": ratio(ours.per_server_cpu_second(), theirs.per_server_cpu_second()),
            })
        };
        let mut full = pair(&f.full, &f.full_nginx);
        load::set(&mut full, "pairgate_x25519", f.full_classical.to_json());
        load::set(
            &mut full,
            "ratio_x25519_per_server_cpu_second",
            json!(ratio(
                f.full_classical.per_server_cpu_second(),
                f.full_nginx.per_server_cpu_second()
            )),
        );
        let (sign, verify, x25519) = self.speed;
        json!({
            "benchmark": "all",
            "machine": { "cpu": procs::cpu_model(), "cpus": self.cpus },
            "pinned": self.pinning,
            "server_cpu": a.server_cpu,
            "client_cpu": a.client_cpu,
            "duration_seconds": a.duration.as_secs_f64(),
            "concurrency": a.concurrency,
            "connections": a.connections,
            "full_handshake": full,
            "resumed_handshake": pair(&f.resumed, &f.resumed_nginx),
            "kept_alive": pair(&f.kept_alive, &f.kept_alive_nginx),
            "proxy": pair(&f.proxy.pairgate, &f.proxy.nginx),
            "proxy_sustained": f.proxy.sustained_json(),
            "idle": {
                "pairgate": f.idle.to_json(),
                "nginx": f.idle_nginx.to_json(),
            },
            "gate_pairing": f.gate.to_json(),
            "unpair_to_reject": {
                "database": f.database,
                "rounds": a.rounds,
                "instances": 2,
                "latency": f.revocation.to_json(),
            },
            "openssl_speed": {
                "ecdsap256_sign_per_s": sign,
                "ecdsap256_verify_per_s": verify,
                "ecdhx25519_per_s": x25519,
            },
            "crypto_ceiling_full_handshakes_per_server_cpu_second": self.ceiling(),
        })
    }
}
