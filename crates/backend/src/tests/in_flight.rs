//! Guest memory in flight: a request's buffers, and the `Dma` handle that
//! keeps them mapped, stay with the engine until the kernel's completion is
//! reaped, and an engine dropped with requests in flight waits for them.

use std::sync::atomic::AtomicU8;
use std::sync::Weak;

use dma::{DmaError, HostRange};

use super::*;

/// Not released yet / released after its bytes arrived / released before.
const HELD: u8 = 0;
const RELEASED_FILLED: u8 = 1;
const RELEASED_EARLY: u8 = 2;

/// A handle onto guest RAM that, when the last `Arc` of it goes, records
/// whether the `len` bytes at `addr` already held `expect` (the file's
/// bytes a read brings in): released early, a read could still have been
/// writing into memory nothing kept mapped.
#[derive(Debug)]
struct Tracked {
    ram: GuestDma,
    addr: u64,
    expect: Vec<u8>,
    state: Arc<AtomicU8>,
}

impl Dma for Tracked {
    fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), DmaError> {
        self.ram.read(addr, buf)
    }
    fn write(&self, addr: u64, buf: &[u8]) -> Result<(), DmaError> {
        self.ram.write(addr, buf)
    }
    fn host_ranges<'a>(
        &'a self,
        addr: u64,
        len: u64,
        dir: Direction,
        out: &mut Vec<HostRange<'a>>,
    ) -> Result<(), DmaError> {
        self.ram.host_ranges(addr, len, dir, out)
    }
}

impl Drop for Tracked {
    fn drop(&mut self) {
        let mut now = vec![0u8; self.expect.len()];
        self.ram.read(self.addr, &mut now).unwrap();
        let state = if now == self.expect {
            RELEASED_FILLED
        } else {
            RELEASED_EARLY
        };
        self.state.store(state, Ordering::SeqCst);
    }
}

const CHUNK: u64 = 64 << 10;

/// A file of 16 chunks of distinct bytes, guest RAM, and one read request
/// per chunk into the same place in RAM, each with its own tracked handle.
struct Reads {
    _t: TempFile,
    file: Arc<BlockFile>,
    requests: Vec<Request>,
    states: Vec<Arc<AtomicU8>>,
    handles: Vec<Weak<dyn Dma>>,
}

fn reads() -> Reads {
    let t = TempFile::new("/tmp", 0);
    let content: Vec<u8> = (0..16 * CHUNK).map(|i| (i / 512 * 13 + 1) as u8).collect();
    std::fs::write(&t.0, &content).unwrap();
    let file = open(&t, true, false);
    let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), (16 * CHUNK) as usize)]).unwrap();
    let ram = GuestDma::new(Arc::new(mem));
    let (mut requests, mut states, mut handles) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..16u64 {
        let state = Arc::new(AtomicU8::new(HELD));
        let at = i * CHUNK;
        let dma: Arc<dyn Dma> = Arc::new(Tracked {
            ram: ram.clone(),
            addr: at,
            expect: content[at as usize..(at + CHUNK) as usize].to_vec(),
            state: state.clone(),
        });
        handles.push(Arc::downgrade(&dma));
        let buffers = GuestBuffers::new(dma, &[(at, CHUNK)], Direction::FromDevice).unwrap();
        requests.push(Request {
            tag: i,
            op: Op::Read {
                offset: at,
                buffers,
            },
        });
        states.push(state);
    }
    Reads {
        _t: t,
        file,
        requests,
        states,
        handles,
    }
}

#[test]
fn test_uring_engine_keeps_buffers_mapped_until_the_completion_is_reaped() {
    let r = reads();
    let notify = EventFd::new(EFD_NONBLOCK).unwrap();
    let mut e = UringEngine::new(r.file.clone(), 32, &notify).unwrap();
    for req in r.requests {
        e.push(req);
    }
    e.submit();
    let mut done = Vec::new();
    e.wait();
    assert!(
        r.handles.iter().all(|h| h.strong_count() == 1),
        "held by the engine alone"
    );
    while done.len() < 16 {
        e.wait();
        e.reap(&mut done);
    }
    assert!(done.iter().all(|c| c.result == Ok(CHUNK)));
    assert!(
        r.handles.iter().all(|h| h.strong_count() == 0),
        "released on reaping"
    );
    let states: Vec<u8> = r.states.iter().map(|s| s.load(Ordering::SeqCst)).collect();
    assert_eq!(states, vec![RELEASED_FILLED; 16]);
}

#[test]
fn test_uring_engine_dropped_with_reads_in_flight_releases_them_after_completion() {
    let r = reads();
    let notify = EventFd::new(EFD_NONBLOCK).unwrap();
    let mut e = UringEngine::new(r.file.clone(), 32, &notify).unwrap();
    for req in r.requests {
        e.push(req);
    }
    e.submit();
    assert_eq!(e.in_flight(), 16);
    drop(e);
    let states: Vec<u8> = r.states.iter().map(|s| s.load(Ordering::SeqCst)).collect();
    assert_eq!(
        states,
        vec![RELEASED_FILLED; 16],
        "no buffer released before its read"
    );
}

#[test]
fn test_uring_engine_dropped_with_requests_never_submitted_releases_them() {
    let r = reads();
    let notify = EventFd::new(EFD_NONBLOCK).unwrap();
    let mut e = UringEngine::new(r.file.clone(), 4, &notify).unwrap();
    for req in r.requests {
        e.push(req);
    }
    drop(e);
    assert!(r.handles.iter().all(|h| h.strong_count() == 0));
    let states: Vec<u8> = r.states.iter().map(|s| s.load(Ordering::SeqCst)).collect();
    assert_eq!(
        states,
        vec![RELEASED_FILLED; 16],
        "backlog run to the end first"
    );
}
