import Foundation
import Synchronization

/// The single allocator behind every tensor buffer: a process-wide pool of freed blocks.
///
/// Freed blocks are kept in a pool keyed by their exact size, because a training step allocates
/// the same shapes every iteration; cached blocks are not live memory. The pool is shared by all
/// ``ComputeContext``s (a block freed by one context may serve another); the accounting of live
/// and peak bytes is per context, in ``MemoryTracker``, done by ``TensorBuffer``.
public final class MemoryAllocator: Sendable {
  /// The process-wide allocator used by ``TensorBuffer``.
  public static let shared = MemoryAllocator()

  /// Blocks are aligned for the widest vector loads (AVX-512 lines).
  public static let alignment = 64

  /// A freed block; the pool owns it exclusively until it hands it to one caller.
  private struct Block: @unchecked Sendable {
    let address: UnsafeMutableRawPointer
  }

  private struct Pool {
    var blocks: [Int: [Block]] = [:]
    var cachedBytes = 0
    var cacheLimitBytes = 8 << 30
  }

  private let pool = Mutex(Pool())

  public init() {}

  /// Upper bound on pooled (freed but cached) bytes; beyond it blocks go back to the system.
  /// Values below zero count as zero (nothing is cached).
  public var cacheLimitBytes: Int {
    get { pool.withLock { $0.cacheLimitBytes } }
    set { pool.withLock { $0.cacheLimitBytes = Swift.max(0, newValue) } }
  }

  /// Bytes kept in the pool for reuse (not live).
  public var cachedBytes: Int { pool.withLock { $0.cachedBytes } }

  /// Returns all pooled blocks to the system.
  public func releaseCache() {
    let released = pool.withLock { pool in
      defer {
        pool.blocks.removeAll()
        pool.cachedBytes = 0
      }
      return pool.blocks.values.joined()
    }
    for block in released { block.address.deallocate() }
  }

  /// Allocates `byteCount` bytes (uninitialized), reusing a pooled block of the same size when there is one.
  ///
  /// The allocator does no accounting: ``TensorBuffer`` reports its bytes to the current
  /// context's ``MemoryTracker``.
  public func allocate(byteCount: Int) -> UnsafeMutableRawPointer {
    let size = Swift.max(byteCount, 1)
    let reused: UnsafeMutableRawPointer? = pool.withLock { pool in
      guard var blocks = pool.blocks[size], let block = blocks.popLast() else { return nil }
      pool.blocks[size] = blocks.isEmpty ? nil : blocks
      pool.cachedBytes -= size
      return block.address
    }
    if let reused { return reused }
    guard let hugePage = Self.transparentHugePageBytes, size >= hugePage else {
      return UnsafeMutableRawPointer.allocate(byteCount: size, alignment: Self.alignment)
    }
    let block = UnsafeMutableRawPointer.allocate(byteCount: size, alignment: hugePage)
    #if os(Linux)
      // A hint: without it (or where it is refused) the block simply gets small pages.
      _ = madvise(block, size, MADV_HUGEPAGE)
    #endif
    return block
  }

  /// The transparent huge page size when the system grants huge pages on request, nil otherwise.
  ///
  /// Blocks of at least this size are aligned to it and marked `MADV_HUGEPAGE`, so that every whole
  /// huge page inside them is one TLB entry instead of 512: a kernel streaming through a 25 MB
  /// tensor with 4 KiB pages walks the page tables 6,272 times. Measured on Zen 4 (N = 32, 56×56,
  /// C = 64 depthwise 7×7, one thread, loaded machine): forward 0.68–0.70 → 0.75–0.77 of the FMA
  /// peak, fused backward 0.65–0.68 → 0.71–0.75. The blocks are pooled, so the one-time cost of
  /// zeroing a huge page at its first touch is paid once per shape, as with small pages.
  public static let transparentHugePageBytes: Int? = transparentHugePageBytes(root: "/")

  /// The huge page size read below `root` (`/` on a real machine; tests pass a fake tree):
  /// `sys/kernel/mm/transparent_hugepage/enabled` must select `[always]` or `[madvise]`, and
  /// `hpage_pmd_size` must be a power of two in 64 KiB...32 MiB (larger huge pages, such as 512 MiB
  /// ones on 64 KiB-page kernels, would align blocks far beyond any tensor's size); nil otherwise
  /// and on systems without transparent huge pages.
  static func transparentHugePageBytes(root: String) -> Int? {
    let directory = root + "sys/kernel/mm/transparent_hugepage/"
    guard let mode = CPUInfo.readPrefix(directory + "enabled", maximumBytes: 128),
      mode.contains("[always]") || mode.contains("[madvise]"),
      let sizeText = CPUInfo.readPrefix(directory + "hpage_pmd_size", maximumBytes: 32),
      let bytes = Int(sizeText.trimmingCharacters(in: .whitespacesAndNewlines)),
      bytes >= 1 << 16, bytes <= 1 << 25, bytes & (bytes - 1) == 0
    else { return nil }
    return bytes
  }

  /// Gives a block back; it is pooled for reuse unless the cache is full.
  public func deallocate(_ pointer: UnsafeMutableRawPointer, byteCount: Int) {
    let size = Swift.max(byteCount, 1)
    let block = Block(address: pointer)
    let kept: Bool = pool.withLock { pool in
      guard pool.cachedBytes + size <= pool.cacheLimitBytes else { return false }
      pool.blocks[size, default: []].append(block)
      pool.cachedBytes += size
      return true
    }
    if !kept { pointer.deallocate() }
  }
}

// The accounting moved to per-context trackers; these forward to the running task's tracker so
// code written against the process-wide counters keeps its meaning in a single-context program.
extension MemoryAllocator {
  /// Bytes held by live tensors of the current context's tracker.
  @available(*, deprecated, message: "use ComputeContext.current.memory.liveBytes")
  public var liveBytes: Int { ComputeContext.current.memory.liveBytes }

  /// The current context's peak live bytes since its last reset.
  @available(*, deprecated, message: "use ComputeContext.current.memory.peakBytes")
  public var peakBytes: Int { ComputeContext.current.memory.peakBytes }

  /// Starts a new peak measurement in the current context's tracker.
  @available(*, deprecated, message: "use ComputeContext.current.memory.resetPeak()")
  public func resetPeak() { ComputeContext.current.memory.resetPeak() }

  /// Measures the peak live bytes of `body` with the current context's tracker.
  @available(*, deprecated, message: "use ComputeContext.current.memory.measurePeak(_:)")
  public func measurePeak<R>(_ body: () throws -> R) rethrows -> (result: R, peakBytes: Int) {
    try ComputeContext.current.memory.measurePeak(body)
  }
}
