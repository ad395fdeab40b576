//! Criterion micro-benchmarks of the hot paths: bencode (a torrent's metainfo), the wire codec
//! (a stream of piece messages) and SHA-1 of a piece. `make bench` compares SHA-1 with the
//! machine's openssl in its table; these are for profiling a change (`cargo bench --bench micro`).

use bytes::BytesMut;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use rand::{RngCore, SeedableRng};

use testbed::bencode;
use testbed::metainfo::Sha1Hash;
use testbed::wire::{Decoder, Message, BLOCK_SIZE};

fn random(n: usize) -> Vec<u8> {
    let mut v = vec![0u8; n];
    rand::rngs::SmallRng::seed_from_u64(1).fill_bytes(&mut v);
    v
}

fn bench_bencode(c: &mut Criterion) {
    // The shape of a 1 GiB torrent with 256 KiB pieces: 4096 piece hashes.
    let mut info =
        b"d6:lengthi1073741824e4:name8:blob.bin12:piece lengthi262144e6:pieces81920:".to_vec();
    info.extend_from_slice(&random(81920));
    info.push(b'e');
    let mut t = b"d8:announce30:http://127.0.0.1:6970/announce4:info".to_vec();
    t.extend_from_slice(&info);
    t.push(b'e');
    let mut g = c.benchmark_group("bencode");
    g.throughput(Throughput::Bytes(t.len() as u64));
    g.bench_function("decode a 1 GiB torrent", |b| {
        b.iter(|| bencode::decode(&t).unwrap())
    });
    let v = bencode::decode(&t).unwrap();
    g.bench_function("encode a 1 GiB torrent", |b| b.iter(|| v.encode()));
    g.finish();
}

fn bench_wire(c: &mut Criterion) {
    let block = bytes::Bytes::from(random(BLOCK_SIZE as usize));
    let mut stream = BytesMut::new();
    let n = 256u32;
    for i in 0..n {
        Message::Piece {
            index: i / 16,
            begin: (i % 16) * BLOCK_SIZE,
            data: block.clone(),
        }
        .encode(&mut stream);
    }
    let dec = Decoder::for_pieces(1 << 16);
    let mut g = c.benchmark_group("wire");
    g.throughput(Throughput::Bytes(stream.len() as u64));
    g.bench_function("decode 4 MiB of piece messages", |b| {
        b.iter(|| {
            let mut buf = stream.clone();
            let mut k = 0;
            while let Some(m) = dec.decode(&mut buf).unwrap() {
                if let Message::Piece { .. } = m {
                    k += 1;
                }
            }
            assert_eq!(k, n);
        })
    });
    g.bench_function("encode 4 MiB of piece messages", |b| {
        let mut out = BytesMut::with_capacity(stream.len());
        b.iter(|| {
            out.clear();
            for i in 0..n {
                Message::piece_header(i / 16, (i % 16) * BLOCK_SIZE, BLOCK_SIZE, &mut out);
                out.extend_from_slice(&block);
            }
        })
    });
    g.finish();
}

fn bench_sha1(c: &mut Criterion) {
    let piece = random(256 * 1024);
    let mut g = c.benchmark_group("sha1");
    g.throughput(Throughput::Bytes(piece.len() as u64));
    g.bench_function("256 KiB piece", |b| b.iter(|| Sha1Hash::of(&piece)));
    g.finish();
}

criterion_group!(benches, bench_bencode, bench_wire, bench_sha1);
criterion_main!(benches);
