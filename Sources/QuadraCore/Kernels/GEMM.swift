import Foundation
import Synchronization

/// General matrix multiply on row-major matrices:
/// `C = alpha · op(A) · op(B) + beta · C`, with `op(X) = X` or `Xᵀ`.
///
/// `op(A)` is `m × k`, `op(B)` is `k × n`, `C` is `m × n`. `lda`, `ldb`, `ldc` are
/// the row strides of the matrices as stored (before transposition).
/// When `beta == 0`, `C` is not read (it may be uninitialized).
///
/// The implementation follows the BLIS design: `op(B)` is copied in `kc × nc` blocks into
/// panels of ``nr`` columns and `op(A)` in `mc × kc` blocks into panels of ``mr`` rows, so the
/// micro-kernel reads both operands contiguously whatever the transposition, and the
/// `mr × nr` tile of `C` lives in 12 vector registers for the whole `kc` loop.
/// The blocks are sized so a B micro-panel stays in L1 and an A block in L2.
public enum GEMM {
  /// Rows of a micro-tile: 6 rows × 2 vectors = 12 accumulators, plus 2 B vectors and one
  /// broadcast A value fill the 16 AVX registers.
  static let mr = 6
  /// Columns of a micro-tile (two `SIMD8<Float>`).
  static let nr = 16
  /// Depth of a packed block: a `kc × nr` B micro-panel (16 KiB) stays in the 32 KiB L1.
  static let kcMax = 256
  /// Rows of a packed A block: `mc × kc` floats (144 KiB) stay in L2.
  static let mcMax = 144
  /// Columns of a packed B block: `kc × nc` floats (1 MiB) stay in L3.
  static let ncMax = 1024

  /// `C = alpha · op(A) · op(B) + beta · C` on row-major storage, using up to ``Parallel/threadCount`` threads.
  ///
  /// - Parameters:
  ///   - m: rows of `op(A)` and `C`; `n`: columns of `op(B)` and `C`; `k`: the shared dimension.
  ///   - a: `A` as stored: `m × k` with row stride `lda`, or `k × m` when `transposeA`.
  ///   - b: `B` as stored: `k × n` with row stride `ldb`, or `n × k` when `transposeB`.
  ///   - c: `m × n` with row stride `ldc`; not read when `beta == 0`. Must not overlap `a` or `b`.
  public static func multiply(
    m: Int, n: Int, k: Int,
    a: UnsafePointer<Float>, lda: Int, transposeA: Bool,
    b: UnsafePointer<Float>, ldb: Int, transposeB: Bool,
    c: UnsafeMutablePointer<Float>, ldc: Int,
    alpha: Float = 1, beta: Float = 0
  ) {
    multiply(
      m: m, n: n, k: k, a: a, lda: lda, transposeA: transposeA, b: b, ldb: ldb, transposeB: transposeB,
      c: c, ldc: ldc, alpha: alpha, beta: beta, columnBias: nil)
  }

  /// ``multiply(m:n:k:a:lda:transposeA:b:ldb:transposeB:c:ldc:alpha:beta:)`` that also adds
  /// `columnBias[j]` to every element of column `j`:
  /// `C = alpha · op(A) · op(B) + beta · C + 1 · biasᵀ`, in the kernel's epilogue (no extra pass over `C`).
  /// `parallel: false` keeps it on the calling thread (for callers that already run in parallel).
  static func multiply(
    m: Int, n: Int, k: Int,
    a: UnsafePointer<Float>, lda: Int, transposeA: Bool,
    b: UnsafePointer<Float>, ldb: Int, transposeB: Bool,
    c: UnsafeMutablePointer<Float>, ldc: Int,
    alpha: Float, beta: Float, columnBias: UnsafePointer<Float>?, parallel: Bool = true
  ) {
    opPrecondition(m >= 0 && n >= 0 && k >= 0, "GEMM: negative size m=\(m) n=\(n) k=\(k)")
    opPrecondition(
      lda >= Swift.max(1, transposeA ? m : k),
      "GEMM: lda=\(lda) too small for \(transposeA ? "Aᵀ" : "A") with m=\(m) k=\(k)")
    opPrecondition(
      ldb >= Swift.max(1, transposeB ? k : n),
      "GEMM: ldb=\(ldb) too small for \(transposeB ? "Bᵀ" : "B") with k=\(k) n=\(n)")
    opPrecondition(ldc >= Swift.max(1, n), "GEMM: ldc=\(ldc) smaller than n=\(n)")
    guard m > 0, n > 0 else { return }
    if k == 0 || alpha == 0 {
      scaleOnly(m: m, n: n, c: c, ldc: ldc, beta: beta, columnBias: columnBias)
      return
    }

    let threads = parallel ? Parallel.threadCount : 1
    let rowBlocks = (m + mr - 1) / mr
    let columnBlocks = (n + nr - 1) / nr
    // About 0.25 M multiply-adds per chunk (~10 µs), so thread dispatch stays a small cost.
    let minimumWork = 1 << 18
    // Each chunk runs the whole blocked algorithm on its slice of C, packing its own copy of the
    // operand it shares with the other chunks, so chunks share no mutable state. Splitting rows
    // repacks op(B) in every chunk, splitting columns repacks op(A); pick the split whose slowest
    // chunk (multiply-adds plus packing, a packed element costing about 8 multiply-adds) is cheaper.
    let splitRows: Bool = {
      let packCost = 8
      let rowChunk = Swift.min(m, (rowBlocks + threads - 1) / threads * mr)
      let rowCost = rowChunk * n * k + packCost * (k * n + rowChunk * k * ((n + ncMax - 1) / ncMax))
      let columnChunk = Swift.min(n, (columnBlocks + threads - 1) / threads * nr)
      let columnCost = m * columnChunk * k + packCost * (k * columnChunk + m * k * ((columnChunk + ncMax - 1) / ncMax))
      return rowCost <= columnCost
    }()
    if threads > 1 && splitRows {
      let minimumChunk = Swift.max(1, minimumWork / (mr * n * k))
      Parallel.forRanges(rowBlocks, minimumChunk: minimumChunk) { blocks in
        let start = blocks.lowerBound * mr
        let end = Swift.min(m, blocks.upperBound * mr)
        serial(
          m: end - start, n: n, k: k,
          a: transposeA ? a + start : a + start * lda, lda: lda, transposeA: transposeA,
          b: b, ldb: ldb, transposeB: transposeB,
          c: c + start * ldc, ldc: ldc, alpha: alpha, beta: beta, columnBias: columnBias)
      }
    } else if threads > 1 {
      let minimumChunk = Swift.max(1, minimumWork / (nr * m * k))
      Parallel.forRanges(columnBlocks, minimumChunk: minimumChunk) { blocks in
        let start = blocks.lowerBound * nr
        let end = Swift.min(n, blocks.upperBound * nr)
        serial(
          m: m, n: end - start, k: k,
          a: a, lda: lda, transposeA: transposeA,
          b: transposeB ? b + start * ldb : b + start, ldb: ldb, transposeB: transposeB,
          c: c + start, ldc: ldc, alpha: alpha, beta: beta, columnBias: columnBias.map { $0 + start })
      }
    } else {
      serial(
        m: m, n: n, k: k, a: a, lda: lda, transposeA: transposeA, b: b, ldb: ldb, transposeB: transposeB,
        c: c, ldc: ldc, alpha: alpha, beta: beta, columnBias: columnBias)
    }
  }

  /// `C = beta · C + bias` for the degenerate products (`k == 0` or `alpha == 0`).
  private static func scaleOnly(
    m: Int, n: Int, c: UnsafeMutablePointer<Float>, ldc: Int, beta: Float, columnBias: UnsafePointer<Float>?
  ) {
    for i in 0..<m {
      let row = c + i * ldc
      for j in 0..<n {
        let scaled: Float = beta == 0 ? 0 : beta * row[j]
        row[j] = scaled + (columnBias?[j] ?? 0)
      }
    }
  }

  /// Splits `total` into the fewest blocks of at most `maximum`, of nearly equal size rounded up to
  /// `multiple`, so the last block is not a thin remainder.
  @inline(__always)
  private static func balancedBlock(_ total: Int, maximum: Int, multiple: Int) -> Int {
    let blocks = (total + maximum - 1) / maximum
    let size = (total + blocks - 1) / blocks
    return Swift.min(maximum, (size + multiple - 1) / multiple * multiple)
  }

  /// The blocked algorithm on one thread.
  private static func serial(
    m: Int, n: Int, k: Int,
    a: UnsafePointer<Float>, lda: Int, transposeA: Bool,
    b: UnsafePointer<Float>, ldb: Int, transposeB: Bool,
    c: UnsafeMutablePointer<Float>, ldc: Int,
    alpha: Float, beta: Float, columnBias: UnsafePointer<Float>?
  ) {
    let kc = balancedBlock(k, maximum: kcMax, multiple: 1)
    let mc = balancedBlock(m, maximum: mcMax, multiple: mr)
    let nc = balancedBlock(n, maximum: ncMax, multiple: nr)
    let packedACount = mc * kc
    let packedBCount = nc * kc
    GEMMScratch.withBuffer(count: packedACount + packedBCount + mr * nr) { scratch in
      let packedB = scratch
      let packedA = scratch + packedBCount
      let tile = packedA + packedACount
      var jc = 0
      while jc < n {
        let ncCurrent = Swift.min(nc, n - jc)
        var pc = 0
        while pc < k {
          let kcCurrent = Swift.min(kc, k - pc)
          packB(
            k: kcCurrent, n: ncCurrent,
            b: transposeB ? b + jc * ldb + pc : b + pc * ldb + jc, ldb: ldb, transposeB: transposeB,
            into: packedB)
          // Only the first pass over k applies the caller's beta and the bias; later passes accumulate.
          let blockBeta: Float = pc == 0 ? beta : 1
          let blockBias = pc == 0 ? columnBias.map { $0 + jc } : nil
          var ic = 0
          while ic < m {
            let mcCurrent = Swift.min(mc, m - ic)
            packA(
              m: mcCurrent, k: kcCurrent,
              a: transposeA ? a + pc * lda + ic : a + ic * lda + pc, lda: lda, transposeA: transposeA,
              into: packedA)
            var jr = 0
            while jr < ncCurrent {
              let columns = Swift.min(nr, ncCurrent - jr)
              let bPanel = UnsafePointer(packedB + jr * kcCurrent)
              let tileBias = blockBias.map { $0 + jr }
              var ir = 0
              while ir < mcCurrent {
                let rows = Swift.min(mr, mcCurrent - ir)
                microKernel(
                  k: kcCurrent, a: UnsafePointer(packedA + ir * kcCurrent), b: bPanel,
                  c: c + (ic + ir) * ldc + jc + jr, ldc: ldc, alpha: alpha, beta: blockBeta, bias: tileBias,
                  rows: rows, columns: columns, tile: tile)
                ir += mr
              }
              jr += nr
            }
            ic += mc
          }
          pc += kc
        }
        jc += nc
      }
    }
  }

  /// Copies `op(B)` (`k × n`) into panels of ``nr`` columns: panel `q` holds columns
  /// `q·nr ..< q·nr + nr` as `k` consecutive rows of `nr` floats, zero-padded past `n`.
  private static func packB(
    k: Int, n: Int, b: UnsafePointer<Float>, ldb: Int, transposeB: Bool, into packed: UnsafeMutablePointer<Float>
  ) {
    var jr = 0
    var panel = packed
    while jr < n {
      let columns = Swift.min(nr, n - jr)
      if !transposeB {
        // Rows of op(B) are rows of B: copy nr contiguous floats per row.
        var source = b + jr
        if columns == nr {
          for p in 0..<k {
            let raw = UnsafeRawPointer(source)
            let destination = UnsafeMutableRawPointer(panel + p * nr)
            destination.storeBytes(of: raw.loadUnaligned(as: SIMD8<Float>.self), as: SIMD8<Float>.self)
            destination.storeBytes(
              of: raw.loadUnaligned(fromByteOffset: 32, as: SIMD8<Float>.self), toByteOffset: 32,
              as: SIMD8<Float>.self)
            source += ldb
          }
        } else {
          for p in 0..<k {
            let destination = panel + p * nr
            for j in 0..<columns { destination[j] = source[j] }
            for j in columns..<nr { destination[j] = 0 }
            source += ldb
          }
        }
      } else {
        // Column j of op(B) is row j of B: read it contiguously, write it with stride nr.
        for j in 0..<columns {
          let source = b + (jr + j) * ldb
          var destination = panel + j
          for p in 0..<k {
            destination.pointee = source[p]
            destination += nr
          }
        }
        if columns < nr {
          for p in 0..<k {
            for j in columns..<nr { panel[p * nr + j] = 0 }
          }
        }
      }
      panel += k * nr
      jr += nr
    }
  }

  /// Copies `op(A)` (`m × k`) into panels of ``mr`` rows: panel `q` holds rows `q·mr ..< q·mr + mr`
  /// column by column (`mr` consecutive floats per column), zero-padded past `m`.
  private static func packA(
    m: Int, k: Int, a: UnsafePointer<Float>, lda: Int, transposeA: Bool, into packed: UnsafeMutablePointer<Float>
  ) {
    var ir = 0
    var panel = packed
    while ir < m {
      let rows = Swift.min(mr, m - ir)
      if !transposeA {
        if rows == mr {
          // Walk the six rows together, so each column of the panel is written as six
          // consecutive floats (the compiler turns this into vector loads and shuffles).
          let r0 = a + ir * lda, r1 = r0 + lda, r2 = r1 + lda
          let r3 = r2 + lda, r4 = r3 + lda, r5 = r4 + lda
          for p in 0..<k {
            let destination = panel + p * mr
            destination[0] = r0[p]
            destination[1] = r1[p]
            destination[2] = r2[p]
            destination[3] = r3[p]
            destination[4] = r4[p]
            destination[5] = r5[p]
          }
        } else {
          for i in 0..<mr {
            if i < rows {
              let source = a + (ir + i) * lda
              for p in 0..<k { panel[p * mr + i] = source[p] }
            } else {
              for p in 0..<k { panel[p * mr + i] = 0 }
            }
          }
        }
      } else {
        // Column p of op(A) is row p of A: mr contiguous floats.
        var source = a + ir
        if rows == mr {
          for p in 0..<k {
            let from = UnsafeRawPointer(source)
            let destination = UnsafeMutableRawPointer(panel + p * mr)
            destination.storeBytes(of: from.loadUnaligned(as: SIMD4<Float>.self), as: SIMD4<Float>.self)
            destination.storeBytes(
              of: from.loadUnaligned(fromByteOffset: 16, as: SIMD2<Float>.self), toByteOffset: 16,
              as: SIMD2<Float>.self)
            source += lda
          }
        } else {
          for p in 0..<k {
            let destination = panel + p * mr
            for i in 0..<rows { destination[i] = source[i] }
            for i in rows..<mr { destination[i] = 0 }
            source += lda
          }
        }
      }
      panel += k * mr
      ir += mr
    }
  }

  /// Computes one `mr × nr` tile: `C[rows, columns] = alpha · Apanel · Bpanel + beta · C + bias`.
  ///
  /// The 12 accumulators are separate locals so the compiler keeps them in registers; each step
  /// of the `k` loop loads two B vectors and broadcasts six A values into 12 fused multiply-adds.
  @inline(__always)
  private static func microKernel(
    k: Int, a: UnsafePointer<Float>, b: UnsafePointer<Float>,
    c: UnsafeMutablePointer<Float>, ldc: Int, alpha: Float, beta: Float, bias: UnsafePointer<Float>?,
    rows: Int, columns: Int, tile: UnsafeMutablePointer<Float>
  ) {
    typealias V = SIMD8<Float>
    var c00 = V(), c01 = V(), c10 = V(), c11 = V(), c20 = V(), c21 = V()
    var c30 = V(), c31 = V(), c40 = V(), c41 = V(), c50 = V(), c51 = V()
    var ap = a
    var bp = UnsafeRawPointer(b)
    for _ in 0..<k {
      let b0 = bp.load(as: V.self)
      let b1 = bp.load(fromByteOffset: 32, as: V.self)
      var x = V(repeating: ap[0])
      c00 = multiplyAdd(c00, x, b0)
      c01 = multiplyAdd(c01, x, b1)
      x = V(repeating: ap[1])
      c10 = multiplyAdd(c10, x, b0)
      c11 = multiplyAdd(c11, x, b1)
      x = V(repeating: ap[2])
      c20 = multiplyAdd(c20, x, b0)
      c21 = multiplyAdd(c21, x, b1)
      x = V(repeating: ap[3])
      c30 = multiplyAdd(c30, x, b0)
      c31 = multiplyAdd(c31, x, b1)
      x = V(repeating: ap[4])
      c40 = multiplyAdd(c40, x, b0)
      c41 = multiplyAdd(c41, x, b1)
      x = V(repeating: ap[5])
      c50 = multiplyAdd(c50, x, b0)
      c51 = multiplyAdd(c51, x, b1)
      ap += mr
      bp += nr * MemoryLayout<Float>.stride
    }

    if rows == mr && columns == nr {
      var bias0 = V(), bias1 = V()
      if let bias {
        bias0 = UnsafeRawPointer(bias).loadUnaligned(as: V.self)
        bias1 = UnsafeRawPointer(bias).loadUnaligned(fromByteOffset: 32, as: V.self)
      }
      @inline(__always) func store(_ row: Int, _ v0: V, _ v1: V) {
        let destination = UnsafeMutableRawPointer(c + row * ldc)
        var r0 = v0 * alpha + bias0
        var r1 = v1 * alpha + bias1
        if beta != 0 {
          r0 = multiplyAdd(r0, V(repeating: beta), destination.loadUnaligned(as: V.self))
          r1 = multiplyAdd(r1, V(repeating: beta), destination.loadUnaligned(fromByteOffset: 32, as: V.self))
        }
        destination.storeBytes(of: r0, as: V.self)
        destination.storeBytes(of: r1, toByteOffset: 32, as: V.self)
      }
      store(0, c00, c01)
      store(1, c10, c11)
      store(2, c20, c21)
      store(3, c30, c31)
      store(4, c40, c41)
      store(5, c50, c51)
    } else {
      // Edge tile: spill the accumulators and write only the valid part.
      let raw = UnsafeMutableRawPointer(tile)
      raw.storeBytes(of: c00, toByteOffset: 0, as: V.self)
      raw.storeBytes(of: c01, toByteOffset: 32, as: V.self)
      raw.storeBytes(of: c10, toByteOffset: 64, as: V.self)
      raw.storeBytes(of: c11, toByteOffset: 96, as: V.self)
      raw.storeBytes(of: c20, toByteOffset: 128, as: V.self)
      raw.storeBytes(of: c21, toByteOffset: 160, as: V.self)
      raw.storeBytes(of: c30, toByteOffset: 192, as: V.self)
      raw.storeBytes(of: c31, toByteOffset: 224, as: V.self)
      raw.storeBytes(of: c40, toByteOffset: 256, as: V.self)
      raw.storeBytes(of: c41, toByteOffset: 288, as: V.self)
      raw.storeBytes(of: c50, toByteOffset: 320, as: V.self)
      raw.storeBytes(of: c51, toByteOffset: 352, as: V.self)
      for i in 0..<rows {
        let destination = c + i * ldc
        let source = tile + i * nr
        for j in 0..<columns {
          var value = alpha * source[j] + (bias?[j] ?? 0)
          if beta != 0 { value += beta * destination[j] }
          destination[j] = value
        }
      }
    }
  }
}

/// `acc + a · b` per lane: one fused multiply-add instruction when the build targets the host CPU.
///
/// The portable build may not assume FMA hardware, where `addingProduct` would become a scalar
/// `fmaf` call per lane, so it uses a separate multiply and add (rounded twice).
@inline(__always)
func multiplyAdd(_ acc: SIMD8<Float>, _ a: SIMD8<Float>, _ b: SIMD8<Float>) -> SIMD8<Float> {
  #if QUADRANET_PORTABLE
    return acc + a * b
  #else
    return acc.addingProduct(a, b)
  #endif
}

/// Reusable packing buffers for ``GEMM``, one per concurrently running GEMM slice.
///
/// Packing needs up to ~1.2 MiB per thread; allocating that per call would page-fault fresh memory
/// every time, so buffers go back to a small pool after each call. They are not tensors, so they
/// are not counted by ``MemoryAllocator``.
enum GEMMScratch {
  /// A packing buffer; the pool hands each one to a single GEMM slice at a time.
  private struct Buffer: @unchecked Sendable {
    let pointer: UnsafeMutablePointer<Float>
    let capacity: Int
  }

  private static let pool = Mutex<[Buffer]>([])

  static func withBuffer<R>(count: Int, _ body: (UnsafeMutablePointer<Float>) -> R) -> R {
    var buffer = pool.withLock { $0.popLast() }
    if let existing = buffer, existing.capacity < count {
      existing.pointer.deallocate()
      buffer = nil
    }
    let entry =
      buffer
      ?? Buffer(
        pointer: UnsafeMutableRawPointer.allocate(byteCount: count * MemoryLayout<Float>.stride, alignment: 64)
          .bindMemory(to: Float.self, capacity: count),
        capacity: count)
    defer { pool.withLock { $0.append(entry) } }
    return body(entry.pointer)
  }
}
