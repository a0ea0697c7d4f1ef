import Foundation

/// The single allocator behind every tensor buffer.
///
/// It counts the bytes handed out and still alive (``liveBytes``) and the
/// high-water mark since the last reset (``peakBytes``), like PyTorch's
/// `torch.cuda.memory_allocated` / `max_memory_allocated`. Freed blocks are kept
/// in a pool keyed by their exact size, because a training step allocates the
/// same shapes every iteration; cached blocks do not count as live.
public final class MemoryAllocator: @unchecked Sendable {
  /// The process-wide allocator used by ``TensorBuffer``.
  public static let shared = MemoryAllocator()

  /// Blocks are aligned for the widest vector loads (AVX-512 lines).
  public static let alignment = 64

  private let lock = NSLock()
  private var pool: [Int: [UnsafeMutableRawPointer]] = [:]
  private var _liveBytes = 0
  private var _peakBytes = 0
  private var _cachedBytes = 0
  private var _allocationCount = 0

  /// Upper bound on pooled (freed but cached) bytes; beyond it blocks go back to the system.
  public var cacheLimitBytes: Int = 8 << 30

  public init() {}

  /// Bytes held by live tensors right now.
  public var liveBytes: Int { lock.withLock { _liveBytes } }
  /// The largest value ``liveBytes`` reached since the last ``resetPeak()``.
  public var peakBytes: Int { lock.withLock { _peakBytes } }
  /// Bytes kept in the pool for reuse (not live).
  public var cachedBytes: Int { lock.withLock { _cachedBytes } }
  /// Number of allocations requested so far (pool hits included).
  public var allocationCount: Int { lock.withLock { _allocationCount } }

  /// Starts a new peak measurement from the current live bytes.
  public func resetPeak() { lock.withLock { _peakBytes = _liveBytes } }

  /// Returns all pooled blocks to the system.
  public func releaseCache() {
    lock.withLock {
      for (_, blocks) in pool { for block in blocks { block.deallocate() } }
      pool.removeAll()
      _cachedBytes = 0
    }
  }

  /// Allocates `byteCount` bytes (uninitialized), reusing a pooled block of the same size when there is one.
  public func allocate(byteCount: Int) -> UnsafeMutableRawPointer {
    let size = Swift.max(byteCount, 1)
    let reused: UnsafeMutableRawPointer? = lock.withLock {
      _allocationCount += 1
      _liveBytes += size
      if _liveBytes > _peakBytes { _peakBytes = _liveBytes }
      if var blocks = pool[size], let block = blocks.popLast() {
        pool[size] = blocks.isEmpty ? nil : blocks
        _cachedBytes -= size
        return block
      }
      return nil
    }
    return reused ?? UnsafeMutableRawPointer.allocate(byteCount: size, alignment: Self.alignment)
  }

  /// Gives a block back; it is pooled for reuse unless the cache is full.
  public func deallocate(_ pointer: UnsafeMutableRawPointer, byteCount: Int) {
    let size = Swift.max(byteCount, 1)
    let keep: Bool = lock.withLock {
      _liveBytes -= size
      guard _cachedBytes + size <= cacheLimitBytes else { return false }
      pool[size, default: []].append(pointer)
      _cachedBytes += size
      return true
    }
    if !keep { pointer.deallocate() }
  }

  /// Measures the peak live bytes while `body` runs (on top of what was live before).
  public func measurePeak<R>(_ body: () throws -> R) rethrows -> (result: R, peakBytes: Int) {
    let base = liveBytes
    resetPeak()
    let result = try body()
    return (result, peakBytes - base)
  }
}
