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
/// panels of `nr` columns and `op(A)` in `mc × kc` blocks into panels of `mr` rows, so the
/// micro-kernel reads both operands contiguously whatever the transposition, and the
/// `mr × nr` tile of `C` stays in vector registers for the whole `kc` loop.
///
/// ## Per machine
/// - The micro-kernel (``MicroKernelShape``) is chosen once per process from the vector ISA
///   ``CPUInfo/current`` reports: 14 × 32 with 16-lane vectors where AVX-512's 32 registers exist,
///   6 × 16 with 8-lane vectors for AVX2's 16 (and for the portable build, which assumes neither).
/// - The blocking (``Blocking``) follows the machine's cache sizes: a `kc × nr` B micro-panel fills
///   half the L1 data cache, an `mc × kc` A block half of L2, a `kc × nc` B block a slice of L3.
///
/// Both kernels give the same results up to rounding (the sums are accumulated in a different order).
public enum GEMM {
  /// A register-tile shape of the micro-kernel: `mr` rows × `nr` columns of `C` per tile.
  enum MicroKernelShape: CaseIterable, Sendable, CustomStringConvertible {
    /// ``GEMMKernel6x16``: AVX2 (16 × 256-bit registers) and the portable build.
    case rows6Columns16
    /// ``GEMMKernel14x32``: AVX-512 (32 × 512-bit registers).
    case rows14Columns32

    var mr: Int { self == .rows6Columns16 ? GEMMKernel6x16.mr : GEMMKernel14x32.mr }
    var nr: Int { self == .rows6Columns16 ? GEMMKernel6x16.nr : GEMMKernel14x32.nr }
    var description: String { "\(mr)x\(nr)" }

    /// The shape for a processor with `isa`, in this build.
    static func preferred(for isa: CPUInfo.VectorISA) -> MicroKernelShape {
      #if QUADRANET_PORTABLE
        // The portable build targets baseline x86-64: SIMD16 would be four SSE registers per vector.
        return .rows6Columns16
      #else
        return isa >= .avx512 ? .rows14Columns32 : .rows6Columns16
      #endif
    }
  }

  /// Cache blocking for one micro-kernel shape: the packed blocks' sizes in floats' rows and columns.
  struct Blocking: Equatable, Sendable {
    /// Depth of a packed block (rows of a B micro-panel).
    var kc: Int
    /// Rows of a packed A block (a multiple of `mr`).
    var mc: Int
    /// Columns of a packed B block (a multiple of `nr`).
    var nc: Int
    /// The deepest row-major `op(A)` the micro-kernels read in place rather than pack (``GEMM/readsADirectly(k:kc:blocking:transposeA:)``).
    var inPlaceDepth: Int

    /// The largest `C` (in floats) of a weight gradient `Aᵀ·B` whose operands are read in place
    /// (``GEMM/multipliesTransposedAInPlace(m:n:blocking:)``) rather than packed.
    ///
    /// A quarter of L2 (`mc · kc / 2`) for the 6 × 16 kernel, half of it (`mc · kc`) for 14 × 32. Measured
    /// on Zen 4 (one thread, paired runs, packing as of stop 22): 128 × 512 × 12544 and 512 × 128 × 12544
    /// with `Aᵀ` ran at 0.76–0.88 of the peak in place and 0.78–0.83 packed with the 14 × 32 kernel, but at
    /// 0.57–0.83 in place against 0.79–0.84 packed with 6 × 16 in an AVX2 build.
    var inPlaceTransposedAProduct: Int
    /// Floats of an `op(A)` block read in place that stay in L1 (half of it) while many column panels reuse
    /// them (``inPlaceRows(k:n:mr:nr:)``).
    var inPlaceBlockFloats: Int

    init(
      kc: Int, mc: Int, nc: Int, inPlaceDepth: Int? = nil, inPlaceTransposedAProduct: Int? = nil,
      inPlaceBlockFloats: Int? = nil
    ) {
      (self.kc, self.mc, self.nc) = (kc, mc, nc)
      self.inPlaceDepth = inPlaceDepth ?? kc + kc / 2
      self.inPlaceTransposedAProduct = inPlaceTransposedAProduct ?? mc * kc / 2
      self.inPlaceBlockFloats = inPlaceBlockFloats ?? mc * kc
    }

    /// The rows of a block of `op(A)` read in place (depth `k`) for a product `n` columns wide: ``mc``, unless
    /// at least four column panels reuse the block and half of L1 holds at least four row tiles of it; then as
    /// many tiles as half of L1 holds, so each panel finds the rows in L1 rather than streaming 14 strided rows
    /// from L2 again. (Deeper blocks keep ``mc``: a B micro-panel is then reused by every row tile of the block.)
    /// Measured on an Intel Xeon (48 KiB L1d, one thread, 14 × 32, 30 alternations, best): 3136 × 256 × 64
    /// 144–148 → 152–156 GFLOP/s with 84 rows against 504, 784 × 256 × 64 150–156 → 158–164, the fused MLP's
    /// 275 × 256 × 64 blocks 156–157 → 158–160; three panels or fewer (n ≤ 80) gained nothing or lost ≤ 1%.
    /// `bench kernels --threads 1`, three alternations: `gemm_3136x256x64` 0.78–0.79 → 0.80–0.84 of the peak;
    /// `bench ops --ops residualMLP --variant 'x[16,56'` (quadranet-t's first stage) forward 32.0 → 31.3 ms,
    /// backward 63.2 → 62.4 ms.
    func inPlaceRows(k: Int, n: Int, mr: Int, nr: Int) -> Int {
      let rows = inPlaceBlockFloats / Swift.max(k, 1) / mr * mr
      guard n >= 4 * nr, rows >= 4 * mr else { return mc }
      return Swift.min(mc, rows)
    }

    /// Blocks sized from `cpu`'s caches (4-byte floats):
    ///
    ///     panel = L1d · share / (4 · nr)     (a panel × nr B micro-panel in a share of L1; 64…512)
    ///     kc = panel · depthFactor, ≤ 512    (the packed depth)
    ///     mc = L2 / 2 / (4 · kc), ↓ mr       (an mc × kc A block in half of L2; mr…4096)
    ///     nc = L3 / 16 / (4 · kc), ↓ nr      (a kc × nc B block in a slice of the shared L3; nr…4096)
    ///     inPlaceDepth = 1.5 · panel          (op(A) read in place up to this depth)
    ///
    /// `share` is ½ for the 6 × 16 kernel, which loads two B vectors per 12 FMAs and needs them in L1
    /// next to the streaming A panels (`depthFactor` 1). The 14 × 32 kernel loads two B vectors per 28
    /// FMAs, so its B micro-panel may fill L1 (`share` = 1) and even twice that (`depthFactor` 2),
    /// streaming the rest from L2 without slowing the kernel, while every doubling of `kc` halves the
    /// passes over `C` (read, updated and written once per depth block). On Zen 4 (32 KiB L1d), one
    /// thread, `bench kernels`, 1024³: kc = 128 gave 0.71 of peak, 256 0.75–0.84, 512 (with the C tile
    /// prefetched) 0.82–0.88 — alternating runs, medians 0.75 → 0.87. `op(A)` is still read in place
    /// only up to 1.5 · `panel` (384 there): deeper rows at a large stride slow the in-place kernel.
    /// L3 is shared by the cores, hence its small slice.
    init(shape: MicroKernelShape, cpu: CPUInfo) {
      let floatBytes = MemoryLayout<Float>.stride
      let wide = shape == .rows14Columns32
      let l1Share = wide ? cpu.level1DataCacheBytes : cpu.level1DataCacheBytes / 2
      let panel = Swift.min(512, Swift.max(64, l1Share / (floatBytes * shape.nr)))
      kc = Swift.min(512, wide ? 2 * panel : panel)
      inPlaceDepth = panel + panel / 2
      let mcFit = cpu.level2CacheBytes / 2 / (floatBytes * kc) / shape.mr * shape.mr
      mc = Swift.min(4096 / shape.mr * shape.mr, Swift.max(shape.mr, mcFit))
      let ncFit = cpu.level3CacheBytes / 16 / (floatBytes * kc) / shape.nr * shape.nr
      nc = Swift.min(4096, Swift.max(shape.nr, ncFit))
      inPlaceTransposedAProduct = wide ? mc * kc : mc * kc / 2
      inPlaceBlockFloats = cpu.level1DataCacheBytes / 2 / floatBytes
    }

    /// The columns of a packed B block for a product of `m` rows: ``nc``, or two micro-panels when `op(A)` is
    /// read in place and 12 to 24 row tiles reuse each panel. A is then not repacked per column block, and a
    /// block packed just before its tiles run is still in L1 when they read it, where a whole-width block
    /// (2.4 MB for 384 × 1536) streams back from L3 after evicting A from L2. Fewer tiles do not pay for
    /// reading `B` in short strided pieces; more re-read A from L2 once per block for no gain.
    /// Measured on an Intel Xeon (48 KiB L1d, 2 MiB L2, one thread, 14 × 32, `bench kernels --gemm`, two or
    /// three passes), fraction of the peak, whole-width → two panels: 196 × 1536 × 384 0.83–0.84 → 0.88–0.90,
    /// 196 × 2048 × 512 0.83 → 0.88, 168 × 1536 × 384 0.82 → 0.87, 168 × 1024 × 256 0.84 → 0.90, 252 × 1536 × 384
    /// 0.86 → 0.90, 308 × 1536 × 384 0.87 → 0.91; with 9 tiles 120 × 1536 × 384 0.755 → 0.74, with 29
    /// 400 × 2048 × 512 0.85–0.86 → 0.84–0.87.
    func columns(m: Int, mr: Int, nr: Int, readsADirectly: Bool) -> Int {
      let rowTiles = (m + mr - 1) / mr
      return readsADirectly && (12...24).contains(rowTiles) ? Swift.min(nc, 2 * nr) : nc
    }

    /// The depth of the packed blocks for a product of depth `k`: `k` itself up to 1.5 · `kc` (one
    /// pass over `C` instead of two; the panel then overflows L1 by at most half, into L2), otherwise
    /// `k` split into equal blocks of at most `kc`.
    func depth(_ k: Int) -> Int {
      k <= kc + kc / 2 ? Swift.max(k, 1) : GEMM.balancedBlock(k, maximum: kc, multiple: 1)
    }
  }

  /// The shape this process uses unless a test forces one (``shapeOverride``): the machine's, or the one
  /// `QUADRANET_GEMM_KERNEL` names (`6x16` or `14x32`; for comparing the kernels on one machine — 14×32
  /// needs AVX-512 to keep its tile in registers).
  static let automaticShape: MicroKernelShape = {
    let requested = ProcessInfo.processInfo.environment["QUADRANET_GEMM_KERNEL"]
    return MicroKernelShape.allCases.first { $0.description == requested }
      ?? MicroKernelShape.preferred(for: CPUInfo.current.kernelVectorISA)
  }()

  /// Forces a micro-kernel shape inside a task (tests run every shape on any machine this way).
  /// Read once per call on the calling thread, so a forced shape also holds on the worker threads.
  @TaskLocal static var shapeOverride: MicroKernelShape?

  /// The micro-kernel tile this process uses, as `rows`x`columns` (`14x32` with AVX-512, `6x16` otherwise).
  public static var microKernel: String { automaticShape.description }

  /// The shape the next call on this task uses.
  static var currentShape: MicroKernelShape { shapeOverride ?? automaticShape }

  /// The blocking of each shape for this machine, computed once.
  private static let blockings: [Blocking] = MicroKernelShape.allCases.map {
    Blocking(shape: $0, cpu: CPUInfo.current)
  }

  static func blocking(for shape: MicroKernelShape) -> Blocking {
    blockings[shape == .rows6Columns16 ? 0 : 1]
  }

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
  /// `blocking` replaces the machine's cache blocking (tests use tiny blocks to cross every boundary).
  static func multiply(
    m: Int, n: Int, k: Int,
    a: UnsafePointer<Float>, lda: Int, transposeA: Bool,
    b: UnsafePointer<Float>, ldb: Int, transposeB: Bool,
    c: UnsafeMutablePointer<Float>, ldc: Int,
    alpha: Float, beta: Float, columnBias: UnsafePointer<Float>?, parallel: Bool = true,
    blocking customBlocking: Blocking? = nil
  ) {
    opPrecondition(m >= 0 && n >= 0 && k >= 0, "GEMM: negative size m=\(m) n=\(n) k=\(k)")
    checkStrideA(m: m, k: k, lda: lda, transposeA: transposeA)
    opPrecondition(
      ldb >= Swift.max(1, transposeB ? k : n),
      "GEMM: ldb=\(ldb) too small for \(transposeB ? "Bᵀ" : "B") with k=\(k) n=\(n)")
    opPrecondition(ldc >= Swift.max(1, n), "GEMM: ldc=\(ldc) smaller than n=\(n)")
    guard m > 0, n > 0 else { return }
    if k == 0 || alpha == 0 {
      scaleOnly(m: m, n: n, c: c, ldc: ldc, beta: beta, columnBias: columnBias)
      return
    }
    let shape = currentShape
    let source = OperandB.matrix(b, ldb: ldb, transposed: transposeB)
    switch shape {
    case .rows6Columns16:
      run(
        GEMMKernel6x16.self, blocking: customBlocking ?? blocking(for: shape), m: m, n: n, k: k, a: a, lda: lda,
        transposeA: transposeA, b: source, c: c, ldc: ldc, alpha: alpha, beta: beta, columnBias: columnBias,
        parallel: parallel)
    case .rows14Columns32:
      run(
        GEMMKernel14x32.self, blocking: customBlocking ?? blocking(for: shape), m: m, n: n, k: k, a: a, lda: lda,
        transposeA: transposeA, b: source, c: c, ldc: ldc, alpha: alpha, beta: beta, columnBias: columnBias,
        parallel: parallel)
    }
  }

  static func checkStrideA(m: Int, k: Int, lda: Int, transposeA: Bool) {
    opPrecondition(
      lda >= Swift.max(1, transposeA ? m : k),
      "GEMM: lda=\(lda) too small for \(transposeA ? "Aᵀ" : "A") with m=\(m) k=\(k)")
  }

  /// Where the micro-kernels' B panels come from.
  enum OperandB {
    /// Packed on the fly from `B` as stored (row stride `ldb`, `n × k` when `transposed`).
    case matrix(UnsafePointer<Float>, ldb: Int, transposed: Bool)
    /// Already packed (``PackedMatrix``): the `kc`-row block starting at row `pc` holds
    /// `paddedColumns / nr` panels of `kc × nr` floats from `storage + pc · paddedColumns`;
    /// this operand starts `columnOffset` columns (a multiple of `nr`) into it.
    case packed(UnsafePointer<Float>, paddedColumns: Int, kc: Int, columnOffset: Int)

    /// The same operand from column `start` on (a multiple of `nr` for packed operands).
    func columns(from start: Int) -> OperandB {
      switch self {
      case .matrix(let b, let ldb, let transposed):
        .matrix(transposed ? b + start * ldb : b + start, ldb: ldb, transposed: transposed)
      case .packed(let storage, let paddedColumns, let kc, let offset):
        .packed(storage, paddedColumns: paddedColumns, kc: kc, columnOffset: offset + start)
      }
    }

    var isPacked: Bool {
      if case .packed = self { true } else { false }
    }
  }

  /// `C = beta · C + bias` for the degenerate products (`k == 0` or `alpha == 0`).
  static func scaleOnly(
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
  static func balancedBlock(_ total: Int, maximum: Int, multiple: Int) -> Int {
    let blocks = (total + maximum - 1) / maximum
    let size = (total + blocks - 1) / blocks
    return Swift.min(maximum, (size + multiple - 1) / multiple * multiple)
  }

  /// Splits the product over up to ``Parallel/threadCount`` threads (when `parallel`) and runs the
  /// blocked algorithm with micro-kernel `K` on each slice of `C`.
  static func run<K: GEMMMicroKernel>(
    _ kernel: K.Type, blocking: Blocking, m: Int, n: Int, k: Int,
    a: UnsafePointer<Float>, lda: Int, transposeA: Bool, b: OperandB,
    c: UnsafeMutablePointer<Float>, ldc: Int, alpha: Float, beta: Float, columnBias: UnsafePointer<Float>?,
    parallel: Bool
  ) {
    let mr = K.mr, nr = K.nr
    let kc: Int
    if case .packed(_, _, let packedDepth, _) = b { kc = packedDepth } else { kc = blocking.depth(k) }
    let threads = parallel ? Parallel.threadCount : 1
    let rowBlocks = (m + mr - 1) / mr
    let columnBlocks = (n + nr - 1) / nr
    // About 0.25 M multiply-adds per chunk (~10 µs), so thread dispatch stays a small cost.
    let minimumWork = 1 << 18
    // Each chunk runs the whole blocked algorithm on its slice of C, packing its own copy of the
    // operand it shares with the other chunks, so chunks share no mutable state. Splitting rows
    // repacks op(B) in every chunk (unless it is prepacked), splitting columns repacks op(A); pick
    // the split whose slowest chunk (multiply-adds plus packing, a packed element costing about
    // 8 multiply-adds) is cheaper. Chunks are whole tiles, so both threads get equal work when the
    // tile count divides evenly.
    let splitRows: Bool = {
      let packCost = 8
      let packBCost = b.isPacked ? 0 : packCost
      let rowChunk = Swift.min(m, (rowBlocks + threads - 1) / threads * mr)
      let rowCost =
        rowChunk * n * k + packBCost * k * n + packCost * rowChunk * k * ((n + blocking.nc - 1) / blocking.nc)
      let columnChunk = Swift.min(n, (columnBlocks + threads - 1) / threads * nr)
      let columnCost =
        m * columnChunk * k + packBCost * k * columnChunk
        + packCost * m * k * ((columnChunk + blocking.nc - 1) / blocking.nc)
      return rowCost <= columnCost
    }()
    if threads > 1 && splitRows {
      let minimumChunk = Swift.max(1, minimumWork / (mr * n * k))
      Parallel.forRanges(rowBlocks, minimumChunk: minimumChunk) { blocks in
        let start = blocks.lowerBound * mr
        let end = Swift.min(m, blocks.upperBound * mr)
        serial(
          K.self, blocking: blocking, kc: kc, m: end - start, n: n, k: k,
          a: transposeA ? a + start : a + start * lda, lda: lda, transposeA: transposeA, b: b,
          c: c + start * ldc, ldc: ldc, alpha: alpha, beta: beta, columnBias: columnBias)
      }
    } else if threads > 1 {
      let minimumChunk = Swift.max(1, minimumWork / (nr * m * k))
      Parallel.forRanges(columnBlocks, minimumChunk: minimumChunk) { blocks in
        let start = blocks.lowerBound * nr
        let end = Swift.min(n, blocks.upperBound * nr)
        serial(
          K.self, blocking: blocking, kc: kc, m: m, n: end - start, k: k,
          a: a, lda: lda, transposeA: transposeA, b: b.columns(from: start),
          c: c + start, ldc: ldc, alpha: alpha, beta: beta, columnBias: columnBias.map { $0 + start })
      }
    } else {
      serial(
        K.self, blocking: blocking, kc: kc, m: m, n: n, k: k, a: a, lda: lda, transposeA: transposeA, b: b,
        c: c, ldc: ldc, alpha: alpha, beta: beta, columnBias: columnBias)
    }
  }

  /// The blocked algorithm on one thread, with B blocks of depth `kc`.
  private static func serial<K: GEMMMicroKernel>(
    _ kernel: K.Type, blocking: Blocking, kc: Int, m: Int, n: Int, k: Int,
    a: UnsafePointer<Float>, lda: Int, transposeA: Bool, b: OperandB,
    c: UnsafeMutablePointer<Float>, ldc: Int,
    alpha: Float, beta: Float, columnBias: UnsafePointer<Float>?
  ) {
    if transposeA, case .matrix(let source, let ldb, false) = b, multipliesTransposedAInPlace(m: m, n: n, blocking: blocking) {
      multiplyTransposedAInPlace(
        K.self, blocking: blocking, m: m, n: n, k: k, a: a, lda: lda, b: source, ldb: ldb, c: c, ldc: ldc, alpha: alpha,
        beta: beta, columnBias: columnBias)
      return
    }
    let mr = K.mr, nr = K.nr
    let readsADirectly = readsADirectly(k: k, kc: kc, blocking: blocking, transposeA: transposeA)
    let mc = balancedBlock(
      m, maximum: readsADirectly ? blocking.inPlaceRows(k: k, n: n, mr: mr, nr: nr) : blocking.mc, multiple: mr)
    let nc = balancedBlock(n, maximum: blocking.columns(m: m, mr: mr, nr: nr, readsADirectly: readsADirectly), multiple: nr)
    // B read in place: a row-major B whose panels only a few row tiles reuse.
    var directB: (source: UnsafePointer<Float>, ldb: Int)?
    if case .matrix(let source, let ldb, false) = b, readsBDirectly(m: m, mr: mr) { directB = (source, ldb) }
    let packedACount = (readsADirectly ? mr : mc) * kc
    let packedBCount = b.isPacked ? 0 : (directB == nil ? nc : nr) * kc
    GEMMScratch.withBuffer(count: packedACount + packedBCount + mr * nr) { scratch in
      // B panels are read with aligned vector loads: the buffer is 64-byte aligned, and every panel
      // (kc · nr floats, nr a multiple of 16) and the tile (mr · nr floats) keep that alignment.
      let packBuffer = scratch
      let tile = packBuffer + packedBCount
      let packedA = tile + mr * nr
      var jc = 0
      while jc < n {
        let ncCurrent = Swift.min(nc, n - jc)
        var pc = 0
        while pc < k {
          let kcCurrent = Swift.min(kc, k - pc)
          let packedB: UnsafePointer<Float>
          // With B in place, only a last panel that is neither full nor exactly half wide is packed (a
          // kernel reads whole vectors, and past the matrix there may be no memory).
          let lastPanel = (ncCurrent - 1) / nr * nr
          let lastColumns = ncCurrent - lastPanel
          let packsLastPanel = K.columnsRead(lastColumns) != lastColumns
          switch b {
          case .matrix(let source, let ldb, _) where directB != nil:
            if packsLastPanel {
              packB(
                K.self, k: kcCurrent, n: lastColumns, b: source + pc * ldb + jc + lastPanel, ldb: ldb, transposeB: false,
                into: packBuffer)
            }
            packedB = UnsafePointer(packBuffer)
          case .matrix(let source, let ldb, let transposed):
            packB(
              K.self, k: kcCurrent, n: ncCurrent,
              b: transposed ? source + jc * ldb + pc : source + pc * ldb + jc, ldb: ldb, transposeB: transposed,
              into: packBuffer)
            packedB = UnsafePointer(packBuffer)
          case .packed(let storage, let paddedColumns, _, let columnOffset):
            packedB = storage + pc * paddedColumns + (columnOffset + jc) * kcCurrent
          }
          // Only the first pass over k applies the caller's beta and the bias; later passes accumulate.
          let blockBeta: Float = pc == 0 ? beta : 1
          let blockBias = pc == 0 ? columnBias.map { $0 + jc } : nil
          var ic = 0
          while ic < m {
            let mcCurrent = Swift.min(mc, m - ic)
            if !readsADirectly {
              packA(
                K.self, m: mcCurrent, k: kcCurrent,
                a: transposeA ? a + pc * lda + ic : a + ic * lda + pc, lda: lda, transposeA: transposeA,
                into: packedA)
            } else if mcCurrent % mr != 0 {
              // A short last row block: reading mr rows in place would run past A, so it is packed
              // (zero-padded), once for all the column panels.
              let last = mcCurrent / mr * mr
              packA(
                K.self, m: mcCurrent - last, k: kcCurrent, a: a + (ic + last) * lda + pc, lda: lda, transposeA: false,
                into: packedA)
            }
            var jr = 0
            while jr < ncCurrent {
              let columns = Swift.min(nr, ncCurrent - jr)
              let tileBias = blockBias.map { $0 + jr }
              let target = c + ic * ldc + jc + jr
              if let directB, jr != lastPanel || !packsLastPanel {
                multiplyRows(
                  K.self, b: RowMajorColumnPanel(directB.source + pc * directB.ldb + jc + jr, ldb: directB.ldb),
                  k: kcCurrent, rows: mcCurrent, columns: columns, a: a + ic * lda + pc, lda: lda,
                  readsADirectly: readsADirectly, packedA: UnsafePointer(packedA), c: target, ldc: ldc,
                  alpha: alpha, beta: blockBeta, bias: tileBias, tile: tile)
              } else {
                multiplyRows(
                  K.self, b: PackedColumnPanel<K>(directB == nil ? packedB + jr * kcCurrent : packedB),
                  k: kcCurrent, rows: mcCurrent, columns: columns, a: a + ic * lda + pc, lda: lda,
                  readsADirectly: readsADirectly, packedA: UnsafePointer(packedA), c: target, ldc: ldc,
                  alpha: alpha, beta: blockBeta, bias: tileBias, tile: tile)
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

  /// One column panel against the `rows` rows of a block: tile by tile, `A` from the packed block or
  /// (`readsADirectly`) in place from row-major `a` (row stride `lda`; a short last tile from `packedA`,
  /// where the caller packed it).
  @inline(__always)
  private static func multiplyRows<K: GEMMMicroKernel, B: GEMMColumnPanel>(
    _ kernel: K.Type, b: B, k: Int, rows: Int, columns: Int, a: UnsafePointer<Float>, lda: Int, readsADirectly: Bool,
    packedA: UnsafePointer<Float>, c: UnsafeMutablePointer<Float>, ldc: Int, alpha: Float, beta: Float,
    bias: UnsafePointer<Float>?, tile: UnsafeMutablePointer<Float>
  ) {
    let mr = K.mr
    @inline(__always)
    func multiplyTile<A: GEMMRowPanel>(_ panel: A, row ir: Int, rows: Int) {
      if columns <= K.nr / 2 {
        K.computeHalf(
          k: k, a: panel, b: b, c: c + ir * ldc, ldc: ldc, alpha: alpha, beta: beta, bias: bias, rows: rows,
          columns: columns, tile: tile)
      } else {
        K.compute(
          k: k, a: panel, b: b, c: c + ir * ldc, ldc: ldc, alpha: alpha, beta: beta, bias: bias, rows: rows,
          columns: columns, tile: tile)
      }
    }
    var ir = 0
    while ir < rows {
      let tileRows = Swift.min(mr, rows - ir)
      if !readsADirectly {
        multiplyTile(ColumnRowPanel(pointer: packedA + ir * k, depthStride: mr), row: ir, rows: tileRows)
      } else if tileRows == mr {
        multiplyTile(RowMajorRowPanel(pointer: a + ir * lda, lda: lda), row: ir, rows: tileRows)
      } else {
        multiplyTile(ColumnRowPanel(pointer: packedA, depthStride: mr), row: ir, rows: tileRows)
      }
      ir += mr
    }
  }

  /// Whether the micro-kernels read a row-major `B` in place (``RowMajorColumnPanel``) instead of packing it:
  /// when at most four row tiles reuse each panel (the weight gradients, `m` = input channels), packing is
  /// a separate pass over the deep operand for little reuse.
  /// Measured on Zen 4 (one thread, 14 × 32, loaded machine, alternating builds): 40 × 80 × 12544 with `Aᵀ`
  /// 0.56–0.59 → 0.64–0.76 of peak.
  static func readsBDirectly(m: Int, mr: Int) -> Bool {
    m <= 4 * mr
  }

  /// Whether the micro-kernels read a row-major `op(A)` in place (``RowMajorRowPanel``) instead of packing it.
  ///
  /// Packing pays off when each packed element feeds many panels of a deep product. In a shallow one
  /// (`k` within one depth block: the 28×28 models' `k` of 40–320, or 64–384 in a 224² CNN's 1 × 1
  /// convolutions) a row-major `A` block is a few contiguous KiB that the kernel streams once per panel,
  /// and the copy costs as much as the multiply-adds it feeds when `n` is small. Measured on Zen 4
  /// (`bench kernels`, one thread, 14 × 32): 12544 × 80 × 40 0.76 → 0.92 of peak, its input gradient
  /// (Bᵀ) 0.54 → 0.77, 3136 × 160 × 80 0.87 → 0.95; a deep product (1024³, 4 KiB row stride) slows
  /// from 0.84 to 0.64 in place, so it keeps packing. A stored `Aᵀ` (the weight gradients) gained
  /// nothing in place and is packed.
  static func readsADirectly(k: Int, kc: Int, blocking: Blocking, transposeA: Bool) -> Bool {
    !transposeA && k <= kc && k <= blocking.inPlaceDepth
  }

  /// Copies `op(B)` (`k × n`) into panels of `nr` columns: panel `q` holds columns
  /// `q·nr ..< q·nr + nr` as `k` consecutive rows of `nr` floats, zero-padded past `n`.
  static func packB<K: GEMMMicroKernel>(
    _ kernel: K.Type, k: Int, n: Int, b: UnsafePointer<Float>, ldb: Int, transposeB: Bool,
    into packed: UnsafeMutablePointer<Float>
  ) {
    typealias V = SIMD8<Float>
    let nr = K.nr
    var jr = 0
    var panel = packed
    if !transposeB && n >= nr {
      // The full panels row by row: each row of B is read once, front to back (the prefetchers stream
      // it from memory, where B is a weight gradient's activations), and its nr-float pieces go to
      // their panels. Panel by panel instead walks k rows at B's row stride once per panel, opening a
      // new page for every piece. Measured on Zen 4 (one thread, `bench kernels --gemm`, paired
      // runs): 256×1024×3136 with Aᵀ 0.74–0.83 → 0.78–0.85 of the peak.
      let fullPanels = n / nr
      for p in 0..<k {
        let raw = UnsafeRawPointer(b + p * ldb)
        for q in 0..<fullPanels {
          let destination = UnsafeMutableRawPointer(packed + q * k * nr + p * nr)
          for offset in stride(from: 0, to: nr * 4, by: 32) {
            destination.storeBytes(
              of: raw.loadUnaligned(fromByteOffset: q * nr * 4 + offset, as: V.self), toByteOffset: offset, as: V.self)
          }
        }
      }
      jr = fullPanels * nr
      panel = packed + fullPanels * k * nr
    }
    while jr < n {
      let columns = Swift.min(nr, n - jr)
      if !transposeB {
        // The last, partial panel (the full ones were copied above): nr floats per row, zero-padded.
        var source = b + jr
        for p in 0..<k {
          copyPadded(source, count: columns, into: panel + p * nr, width: nr)
          source += ldb
        }
      } else if columns == nr {
        // Column j of op(B) is row j of B: 16 rows at a time through the in-register transpose, each row read
        // with vector loads, each depth step's 16 columns stored as one vector. Measured on an Intel Xeon (one
        // thread, `bench kernels --gemm`, three alternations; scalar stores at stride nr before): 784 × 2048 × 512
        // with Bᵀ 0.73–0.78 → 0.88–0.90 of the peak, 784 × 512 × 2048 0.76–0.77 → 0.87–0.88, 3136 × 256 × 1024 0.83
        // → 0.87 (a linear layer's forward product: its weight is a stored Bᵀ).
        for group in stride(from: 0, to: nr, by: 16) {
          GEMMTranspose.columns16(
            of: b + (jr + group) * ldb, lda: ldb, rows: 16, k: k, into: panel + group, columnStride: nr)
        }
      } else {
        // A partial last panel: column j of op(B) is row j of B, read contiguously, written with stride nr.
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

  /// `destination[0..<count] = source[0..<count]`, `destination[count..<width] = 0`, in 8-float vectors
  /// where they fit (the zero-padded last panel of a product whose size is not a multiple of the tile).
  @inline(__always)
  static func copyPadded(
    _ source: UnsafePointer<Float>, count: Int, into destination: UnsafeMutablePointer<Float>, width: Int
  ) {
    typealias V = SIMD8<Float>
    let from = UnsafeRawPointer(source)
    let to = UnsafeMutableRawPointer(destination)
    let stride = MemoryLayout<Float>.stride
    var j = 0
    while j + 8 <= count {
      to.storeBytes(of: from.loadUnaligned(fromByteOffset: j * stride, as: V.self), toByteOffset: j * stride, as: V.self)
      j += 8
    }
    // 4 and 2 floats at a time before the scalar tail: with a constant `count` (a micro-kernel's `mr`, packing a
    // stored Aᵀ) the whole copy unrolls into a few vector moves, where a scalar loop stayed scalar moves.
    if j + 4 <= count {
      to.storeBytes(
        of: from.loadUnaligned(fromByteOffset: j * stride, as: SIMD4<Float>.self), toByteOffset: j * stride,
        as: SIMD4<Float>.self)
      j += 4
    }
    if j + 2 <= count {
      to.storeBytes(
        of: from.loadUnaligned(fromByteOffset: j * stride, as: SIMD2<Float>.self), toByteOffset: j * stride,
        as: SIMD2<Float>.self)
      j += 2
    }
    while j < count {
      destination[j] = source[j]
      j += 1
    }
    while j + 8 <= width {
      to.storeBytes(of: V(), toByteOffset: j * stride, as: V.self)
      j += 8
    }
    while j < width {
      destination[j] = 0
      j += 1
    }
  }

  /// Copies `op(A)` (`m × k`) into panels of `mr` rows: panel `q` holds rows `q·mr ..< q·mr + mr`
  /// column by column (`mr` consecutive floats per column), zero-padded past `m`.
  private static func packA<K: GEMMMicroKernel>(
    _ kernel: K.Type, m: Int, k: Int, a: UnsafePointer<Float>, lda: Int, transposeA: Bool,
    into packed: UnsafeMutablePointer<Float>
  ) {
    let mr = K.mr
    var ir = 0
    var panel = packed
    if transposeA && m >= mr {
      // The full panels of a stored Aᵀ row by row, as packB does for the same reason: each row of Aᵀ
      // (a weight gradient's output gradients, from memory) is read once, front to back. Measured on
      // Zen 4 (paired runs): 1024×256×3136 0.69–0.73 → 0.76–0.84 of the peak, and with the pieces copied as
      // vectors and rows prefetched 8 ahead 0.68–0.84 → 0.86–0.90.
      let fullPanels = m / mr
      let ahead = 8
      for p in 0..<k {
        let source = a + p * lda
        // Rows a block apart are a block of m floats at a large stride (the next ic block's columns lie
        // between them), which the hardware prefetchers do not stream from memory on their own.
        if p + ahead < k { prefetchForReading(source + ahead * lda, count: fullPanels * mr) }
        for q in 0..<fullPanels {
          copyPadded(source + q * mr, count: mr, into: packed + q * k * mr + p * mr, width: mr)
        }
      }
      ir = fullPanels * mr
      panel = packed + fullPanels * k * mr
    }
    while ir < m {
      let rows = Swift.min(mr, m - ir)
      if !transposeA {
        let source = a + ir * lda
        if rows == mr {
          // Vector loads along each row, transposed in registers (``GEMMTranspose``). Reading the mr rows
          // column by column touches mr cache lines per column, and at a row stride of 4 KiB (k = 1024)
          // they all map to one L1 set and evict each other before the next column. Measured on Zen 4
          // (paired runs): 3136×256×1024 0.78–0.83 → 0.83–0.92 of the peak, 12544×128×512 0.74–0.78 →
          // 0.80–0.87.
          if mr <= 8 {
            GEMMTranspose.columns8(of: source, lda: lda, rows: mr, k: k, into: panel)
          } else {
            GEMMTranspose.columns16(of: source, lda: lda, rows: mr, k: k, into: panel)
          }
        } else {
          for i in 0..<mr {
            if i < rows {
              let row = source + i * lda
              for p in 0..<k { panel[p * mr + i] = row[p] }
            } else {
              for p in 0..<k { panel[p * mr + i] = 0 }
            }
          }
        }
      } else {
        // The last, partial panel (the full ones were copied above): column p of op(A) is row p of A.
        var source = a + ir
        for p in 0..<k {
          copyPadded(source, count: rows, into: panel + p * mr, width: mr)
          source += lda
        }
      }
      panel += k * mr
      ir += mr
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
/// Packing needs a few MiB per thread (see ``GEMM/Blocking``); allocating that per call would page-fault fresh memory
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
