//! Throughput of the streaming layer against raw ring AES-256-GCM, single core, plus the
//! keyring open time at the default scrypt cost.
//!
//! Run: `cargo bench -p zib-crypto --bench throughput` (optional argument: MiB to
//! process, default 256). Each measurement is repeated, interleaved with the others so
//! background load hits them alike, and the best run is reported.

// A bench binary reports on stdout; unwrap failures are the report.
#![allow(clippy::print_stdout, clippy::unwrap_used, clippy::expect_used)]

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

const ROUNDS: usize = 5;
/// Input chunk size fed to the streams: what a pipe reader typically hands over.
const CHUNK: usize = 1 << 20;

fn mib_per_s(bytes: usize, d: Duration) -> f64 {
    bytes as f64 / (1024.0 * 1024.0) / d.as_secs_f64()
}

fn best(slot: &mut Option<Duration>, d: Duration) {
    if slot.is_none_or(|b| d < b) {
        *slot = Some(d);
    }
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
    let chunks: Vec<Bytes> = (0..len)
        .step_by(CHUNK)
        .map(|i| plain.slice(i..(i + CHUNK).min(len)))
        .collect();

    let raw_key = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &[7u8; 32]).unwrap());
    let key = DataKey::from_secret_bytes(KeyId::from_bytes([1; 16]), Zeroizing::new([7u8; 32]));
    let identity = VolumeIdentity {
        repository_id: [2; 16],
        backup_id: [3; 16],
        volume_index: 0,
    };
    let salt = VolumeSalt::from_bytes([4; 32]);

    // The volume's ciphertext, as chunks, for the decrypt runs.
    let mut enc = VolumeEncryptor::new(&key, identity, &salt).unwrap();
    let mut ct = Vec::with_capacity(len + len / 1000 + 4096);
    for c in &chunks {
        ct.extend_from_slice(&enc.push(c).unwrap());
    }
    ct.extend_from_slice(&enc.finish().unwrap());
    let ct = Bytes::from(ct);
    let ct_chunks: Vec<Bytes> = (0..ct.len())
        .step_by(CHUNK)
        .map(|i| ct.slice(i..(i + CHUNK).min(ct.len())))
        .collect();

    let mut raw_buf = plain.to_vec();
    let nonce = || Nonce::assume_unique_for_key([9u8; 12]);
    let mut ideal = None;
    let mut inplace = [None; 5];
    let mut copyseal = [None; 5];
    let (mut raw_seal, mut raw_open, mut st_enc, mut st_dec, mut push_enc) =
        (None, None, None, None, None);
    for _ in 0..ROUNDS {
        // Raw ring: one in-place seal of the whole buffer (the ceiling for AES-GCM here).
        let t = Instant::now();
        let tag = raw_key
            .seal_in_place_separate_tag(nonce(), Aad::empty(), &mut raw_buf)
            .unwrap();
        best(&mut raw_seal, t.elapsed());
        let mut sealed = raw_buf.clone();
        sealed.extend_from_slice(tag.as_ref());
        let t = Instant::now();
        let opened = raw_key
            .open_in_place(nonce(), Aad::empty(), &mut sealed)
            .unwrap();
        black_box(opened.len());
        best(&mut raw_open, t.elapsed());
        raw_buf.copy_from_slice(&sealed[..len]);

        let t = Instant::now();
        let enc = VolumeEncryptor::new(&key, identity, &salt).unwrap();
        let input = stream::iter(chunks.iter().cloned().map(Ok::<_, std::io::Error>));
        let n = block_on(
            encrypt_stream(input, enc).fold(0usize, |n, c| async move { n + c.unwrap().len() }),
        );
        best(&mut st_enc, t.elapsed());
        assert_eq!(n, ct.len());

        let t = Instant::now();
        let mut enc = VolumeEncryptor::new(&key, identity, &salt).unwrap();
        let mut n = 0;
        for c in &chunks {
            n += enc.push(c).unwrap().len();
        }
        n += enc.finish().unwrap().len();
        best(&mut push_enc, t.elapsed());
        assert_eq!(n, ct.len());

        let t = Instant::now();
        let mut seg = vec![0u8; 65536];
        for c in &chunks {
            for piece in c.chunks(65536) {
                seg[..piece.len()].copy_from_slice(piece);
                let tag = raw_key
                    .seal_in_place_separate_tag(nonce(), Aad::empty(), &mut seg[..piece.len()])
                    .unwrap();
                black_box(tag.as_ref());
            }
        }
        best(&mut ideal, t.elapsed());
        for (i, segsz) in [16384usize, 65536, 262144, 1 << 20, 4 << 20]
            .into_iter()
            .enumerate()
        {
            let t = Instant::now();
            for piece in raw_buf.chunks_mut(segsz) {
                let tag = raw_key
                    .seal_in_place_separate_tag(nonce(), Aad::empty(), piece)
                    .unwrap();
                black_box(tag.as_ref());
            }
            best(&mut inplace[i], t.elapsed());
            let mut seg = vec![0u8; segsz];
            let t = Instant::now();
            for piece in plain.chunks(segsz) {
                seg[..piece.len()].copy_from_slice(piece);
                let tag = raw_key
                    .seal_in_place_separate_tag(nonce(), Aad::empty(), &mut seg[..piece.len()])
                    .unwrap();
                black_box(tag.as_ref());
            }
            best(&mut copyseal[i], t.elapsed());
        }

        let t = Instant::now();
        let dec = VolumeDecryptor::new(&key, identity);
        let input = stream::iter(ct_chunks.iter().cloned().map(Ok::<_, std::io::Error>));
        let n = block_on(
            decrypt_stream(input, dec).fold(0usize, |n, c| async move { n + c.unwrap().len() }),
        );
        best(&mut st_dec, t.elapsed());
        assert_eq!(n, len);
    }
    let (raw_seal, raw_open, st_enc, st_dec, push_enc) = (
        raw_seal.unwrap(),
        raw_open.unwrap(),
        st_enc.unwrap(),
        st_dec.unwrap(),
        push_enc.unwrap(),
    );
    let row = |name: &str, d: Duration, raw: Duration| {
        println!(
            "{name:<36} {:>9.1} MiB/s   {:>5.1}% of raw ring",
            mib_per_s(len, d),
            100.0 * raw.as_secs_f64() / d.as_secs_f64()
        );
    };
    println!(
        "{mib} MiB, single thread, best of {ROUNDS}, input chunks of {} KiB",
        CHUNK >> 10
    );
    row("raw ring AES-256-GCM seal", raw_seal, raw_seal);
    row("encrypt_stream (async adaptor)", st_enc, raw_seal);
    row("VolumeEncryptor::push", push_enc, raw_seal);
    row("IDEAL copy+seal", ideal.unwrap(), raw_seal);
    for (i, segsz) in [16384usize, 65536, 262144, 1 << 20, 4 << 20]
        .into_iter()
        .enumerate()
    {
        row(
            &format!("in place seg {segsz}"),
            inplace[i].unwrap(),
            raw_seal,
        );
        row(
            &format!("copy+seal seg {segsz}"),
            copyseal[i].unwrap(),
            raw_seal,
        );
    }
    row("raw ring AES-256-GCM open", raw_open, raw_open);
    row("decrypt_stream (async adaptor)", st_dec, raw_open);

    let (keyring, _) =
        Keyring::create(&Passphrase::new("bench".into()), KdfParams::DEFAULT).unwrap();
    let mut times = Vec::new();
    for _ in 0..3 {
        let t = Instant::now();
        black_box(keyring.unlock(&Passphrase::new("bench".into())).unwrap());
        times.push(t.elapsed());
    }
    times.sort();
    println!(
        "keyring open at default cost (scrypt log2 N = 17, r = 8, p = 1): median {:.0} ms (min {:.0} ms)",
        times[1].as_secs_f64() * 1e3,
        times[0].as_secs_f64() * 1e3
    );
}
