//! Throughput of the streaming layer against raw ring AES-256-GCM, single thread, plus a
//! segment-size sweep and the keyring open time at the default scrypt cost.
//!
//! Run: `cargo bench -p zib-crypto --bench throughput` (optional argument: MiB to
//! process, default 256; pin it to one core with `taskset -c 1` on a busy machine).
//! Every measurement is repeated in rounds, interleaved with the others so background
//! load hits them alike; it reports the best throughput and the median over rounds of
//! the ratio to raw ring measured in the same round.
//!
//! "Owned" input chunks are uniquely owned `Bytes` (what a reader that allocates a fresh
//! buffer per read hands over): the streaming layer seals and opens segments where they
//! lie. "Shared" chunks are slices of one big buffer: the layer must copy each byte once.

// A bench binary reports on stdout; a failed unwrap is the report.
#![allow(clippy::print_stdout, clippy::unwrap_used)]

use std::hint::black_box;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::{executor::block_on, stream, StreamExt};
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM};
use zeroize::Zeroizing;
use zib_crypto::{
    decrypt_stream, encrypt_stream, DataKey, KdfParams, KeyId, Keyring, Passphrase,
    VolumeDecryptor, VolumeEncryptor, VolumeIdentity, VolumeSalt,
};

const ROUNDS: usize = 9;
/// Input chunk size fed to the streams.
const CHUNK: usize = 1 << 20;
const SWEEP: [usize; 5] = [16 << 10, 64 << 10, 256 << 10, 1 << 20, 4 << 20];

fn mib_per_s(bytes: usize, d: Duration) -> f64 {
    bytes as f64 / (1024.0 * 1024.0) / d.as_secs_f64()
}

/// Every run of one measurement, in round order.
#[derive(Default)]
struct Best(Vec<Duration>);

impl Best {
    fn time<T>(&mut self, f: impl FnOnce() -> T) -> T {
        let t = Instant::now();
        let out = f();
        self.0.push(t.elapsed());
        out
    }
    fn get(&self) -> Duration {
        self.0.iter().copied().min().unwrap()
    }
    /// Median over rounds of raw time / this time, each pair measured in the same round,
    /// so a burst of background load skews one round rather than the whole figure.
    fn median_ratio(&self, raw: &Best) -> f64 {
        let mut ratios: Vec<f64> = self
            .0
            .iter()
            .zip(&raw.0)
            .map(|(d, r)| r.as_secs_f64() / d.as_secs_f64())
            .collect();
        ratios.sort_by(f64::total_cmp);
        ratios[ratios.len() / 2]
    }
}

fn owned_chunks(buf: &[u8]) -> Vec<Bytes> {
    buf.chunks(CHUNK).map(|c| Bytes::from(c.to_vec())).collect()
}

fn shared_chunks(buf: &Bytes) -> Vec<Bytes> {
    (0..buf.len())
        .step_by(CHUNK)
        .map(|i| buf.slice(i..(i + CHUNK).min(buf.len())))
        .collect()
}

fn drain<S: futures::Stream<Item = Result<Bytes, std::io::Error>>>(s: S) -> usize {
    block_on(s.fold(0usize, |n, c| async move { n + c.unwrap().len() }))
}

fn main() {
    let mib: usize = std::env::args()
        .skip(1)
        .find(|a| !a.starts_with('-'))
        .and_then(|a| a.parse().ok())
        .unwrap_or(256);
    let len = mib << 20;
    let mut plain = vec![0u8; len];
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for chunk in plain.chunks_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        chunk.copy_from_slice(&x.to_le_bytes()[..chunk.len()]);
    }
    let plain = Bytes::from(plain);

    let raw_key = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &[7u8; 32]).unwrap());
    let key = DataKey::from_secret_bytes(KeyId::from_bytes([1; 16]), Zeroizing::new([7u8; 32]));
    let identity = VolumeIdentity {
        repository_id: [2; 16],
        backup_id: [3; 16],
        volume_index: 0,
    };
    let salt = VolumeSalt::from_bytes([4; 32]);
    let encryptor = || VolumeEncryptor::new(&key, identity, &salt).unwrap();
    let decryptor = || VolumeDecryptor::new(&key, identity);

    let mut enc = encryptor();
    let mut ct = Vec::with_capacity(len + len / 1000 + 4096);
    for c in shared_chunks(&plain) {
        ct.extend_from_slice(&enc.push(&c).unwrap());
    }
    ct.extend_from_slice(&enc.finish().unwrap());
    let ct = Bytes::from(ct);

    let mut raw_buf = plain.to_vec();
    let nonce = || Nonce::assume_unique_for_key([9u8; 12]);
    let (mut raw_seal, mut raw_open) = (Best::default(), Best::default());
    let (mut enc_owned, mut enc_shared, mut enc_push) =
        (Best::default(), Best::default(), Best::default());
    let (mut dec_owned, mut dec_shared) = (Best::default(), Best::default());
    let mut sweep: Vec<Best> = SWEEP.iter().map(|_| Best::default()).collect();
    for _ in 0..ROUNDS {
        // Raw ring: one in-place seal of the whole buffer, then one in-place open.
        let tag = raw_seal.time(|| {
            raw_key
                .seal_in_place_separate_tag(nonce(), Aad::empty(), &mut raw_buf)
                .unwrap()
        });
        raw_open.time(|| {
            let opened = raw_key
                .open_in_place_separate_tag(nonce(), Aad::empty(), tag, &mut raw_buf, 0..)
                .unwrap();
            black_box(opened.len())
        });

        let input = owned_chunks(&plain);
        let n = enc_owned.time(|| {
            drain(encrypt_stream(
                stream::iter(input.into_iter().map(Ok)),
                encryptor(),
            ))
        });
        assert_eq!(n, ct.len());
        let n = enc_shared.time(|| {
            drain(encrypt_stream(
                stream::iter(shared_chunks(&plain).into_iter().map(Ok)),
                encryptor(),
            ))
        });
        assert_eq!(n, ct.len());
        let n = enc_push.time(|| {
            let mut enc = encryptor();
            let mut n = 0;
            for c in plain.chunks(CHUNK) {
                n += enc.push(c).unwrap().len();
            }
            n + enc.finish().unwrap().len()
        });
        assert_eq!(n, ct.len());

        let input = owned_chunks(&ct);
        let n = dec_owned.time(|| {
            drain(decrypt_stream(
                stream::iter(input.into_iter().map(Ok)),
                decryptor(),
            ))
        });
        assert_eq!(n, len);
        let n = dec_shared.time(|| {
            drain(decrypt_stream(
                stream::iter(shared_chunks(&ct).into_iter().map(Ok)),
                decryptor(),
            ))
        });
        assert_eq!(n, len);

        // Segment-size sweep: raw ring sealing in place, one call per segment.
        for (best, &segment) in sweep.iter_mut().zip(&SWEEP) {
            best.time(|| {
                for piece in raw_buf.chunks_mut(segment) {
                    let tag = raw_key
                        .seal_in_place_separate_tag(nonce(), Aad::empty(), piece)
                        .unwrap();
                    black_box(tag.as_ref());
                }
            });
        }
    }

    let row = |name: &str, this: &Best, raw: &Best| {
        println!(
            "{name:<52} {:>6.0} MiB/s  {:>6.1}% of raw ring",
            mib_per_s(len, this.get()),
            100.0 * this.median_ratio(raw)
        );
    };
    println!(
        "{mib} MiB, one thread, {ROUNDS} rounds, input chunks of {} KiB; best throughput, median per-round ratio to raw ring",
        CHUNK >> 10
    );
    row(
        "raw ring AES-256-GCM seal, one call, in place",
        &raw_seal,
        &raw_seal,
    );
    row(
        "encrypt_stream, owned chunks (sealed in place)",
        &enc_owned,
        &raw_seal,
    );
    row(
        "encrypt_stream, shared chunks (one copy)",
        &enc_shared,
        &raw_seal,
    );
    row(
        "VolumeEncryptor::push, borrowed slices (one copy)",
        &enc_push,
        &raw_seal,
    );
    row(
        "raw ring AES-256-GCM open, one call, in place",
        &raw_open,
        &raw_open,
    );
    row(
        "decrypt_stream, owned chunks (opened in place)",
        &dec_owned,
        &raw_open,
    );
    row(
        "decrypt_stream, shared chunks (one copy)",
        &dec_shared,
        &raw_open,
    );
    for (best, segment) in sweep.iter().zip(SWEEP) {
        row(
            &format!("raw ring seal in {} KiB segments", segment >> 10),
            best,
            &raw_seal,
        );
    }

    let (keyring, _) =
        Keyring::create(&Passphrase::new("bench".into()), KdfParams::DEFAULT).unwrap();
    let mut times: Vec<Duration> = (0..3)
        .map(|_| {
            let t = Instant::now();
            black_box(keyring.unlock(&Passphrase::new("bench".into())).unwrap());
            t.elapsed()
        })
        .collect();
    times.sort();
    println!(
        "keyring open at default cost (scrypt log2 N = 17, r = 8, p = 1): median {:.0} ms, min {:.0} ms",
        times[1].as_secs_f64() * 1e3,
        times[0].as_secs_f64() * 1e3
    );
}
