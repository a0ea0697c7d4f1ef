import Foundation

/// Depthwise 2-D convolution, stride 1, "same" zero padding, channels-last.
///
/// `y[n, h, w, c] = b[c] + Σ_{i,j < k} x[n, h + i − p, w + j − p, c] · W[i, j, c]`
/// with `p = k / 2` (`k` odd), input `[N, H, W, C]`, weight `[k, k, C]`, bias `[C]`.
///
/// ## Layout
/// Channels are processed in blocks of `L` lanes, one vector: `L = 16` (one zmm register)
/// where the processor has AVX-512 with full-width 512-bit FMAs, or with few lanes wasted on a
/// partial last block, otherwise `L = 8` (one ymm register); see
/// ``preferredLanes(channels:isa:fullWidth512:)``.
/// Each thread copies the input rows it needs, once each, into a small ring of
/// *padded, channel-blocked* rows: `[⌈C/L⌉ blocks][W + 2p columns][L lanes]`, zero
/// in the `p` pad columns on each side and in the unused lanes of a last partial
/// block. The weights are repacked the same way (`[⌈C/L⌉][k][k][L]`). Then
///
/// - no inner loop tests a column bound (every output column is "interior");
///   rows above/below the image are skipped by restricting the kernel rows;
/// - every load in the inner loops is a full vector at a constant offset from a
///   pointer that advances by `L` floats, so the loops need few registers and each
///   cache line is used fully; a channel block's `k` rows (2–4 KB each) stay in L1;
/// - channel counts that are not a multiple of `L` run the same vector code on zero
///   lanes; only the final store of a partial block writes fewer lanes.
///
/// The 7×7 convolution over whole channel blocks skips the ring where it can: its forward pass and
/// its fused backward read `x` and `∂L/∂y` where they are, in NHWC, with column tiles that cover each
/// row exactly (``Kernels/inPlaceTiling(_:)``: 8 and 7 columns, and on 16-lane blocks 14), since a
/// copied vector costs a load and a store besides its uses (AVX2 since stop 31, AVX-512 since stop 36).
///
/// ## Tiles
/// A forward tile keeps several output columns × `L` channels of accumulators in
/// registers for all `k × k` taps. The general tile (8 columns, any `k`) reuses each
/// loaded weight vector 8 times (9 loads per 8 FMAs). The 7×7 tile (every model's
/// depthwise layer) also keeps a kernel row's weights in registers and loads each
/// input column once for all outputs it reaches (20 loads per 49 FMAs); the 7-tap
/// weight-gradient tile likewise slides a window of inputs through registers.
/// Both tiles are written once, as `accumulate` on a `Tile` of accumulators (in
/// ``Kernels``, generic over the vector), so fused kernels over the same rows
/// (``QuadraticDepthwiseConvolution``: `dw_a(x) ⊙ dw_b(x) + dw_c(x)` and its backward)
/// reuse them with their own epilogues.
///
/// ## Why 16 lanes on AVX-512
/// The 7×7 tiles have 7 independent accumulator chains. Zen 4 runs a ymm FMA in 4 cycles
/// on each of 2 pipes, so 8 chains are needed to keep both busy: with 7 the tile tops out
/// at 7/8 of peak. A zmm FMA takes both pipes for one cycle, so 4 chains suffice and the
/// same 7 keep the unit full; each instruction also does twice the work (half the loads,
/// loop overhead and front-end slots per FLOP). Where a zmm FMA is full width (Intel, Zen 5:
/// ``CPUInfo/fullWidth512``) it takes 4 cycles on each of 2 pipes again, so 8 chains are needed:
/// the in-place 7×7 passes run 8- and 14-column tiles, and their weight gradient two kernel rows
/// (14 chains) per pass.
public enum DepthwiseConvolution {
  typealias Vector = SIMD8<Float>
  /// Lanes of the SIMD8 helpers below (the dense convolution's row sums use them).
  static let lanes = 8

  @inline(__always) static func load(_ pointer: UnsafePointer<Float>) -> Vector {
    UnsafeRawPointer(pointer).loadUnaligned(as: Vector.self)
  }

  @inline(__always) static func store(_ value: Vector, _ pointer: UnsafeMutablePointer<Float>) {
    UnsafeMutableRawPointer(pointer).storeBytes(of: value, as: Vector.self)
  }

  /// `target[i] += source[i]` for `i < count`.
  @inline(__always)
  static func addInPlace(_ target: UnsafeMutablePointer<Float>, _ source: UnsafePointer<Float>, count: Int) {
    var i = 0
    while i + lanes <= count {
      store(load(target + i) + load(source + i), target + i)
      i += lanes
    }
    while i < count {
      target[i] += source[i]
      i += 1
    }
  }

  // MARK: Vector width

  /// The channel-block width (8 or 16) for `channels` channels on a processor with `isa`:
  /// 16 with AVX-512 when the zero lanes of a partial last 16-lane block are at most 1/8 of
  /// all lanes (so C = 16, 32, 48, 64, 72, 80, … but not 8, 24 or 40, whose 16-lane blocks
  /// would compute 33%, 25% or 17% zeros), otherwise 8 — where a 512-bit FMA is two 256-bit
  /// halves (Zen 4), zero lanes cost as much as real ones. With full-width 512-bit FMAs
  /// (``CPUInfo/fullWidth512``) a 16-lane instruction costs what an 8-lane one does, so 16 lanes
  /// never need more instructions and always win: on an Intel Xeon (family 6 model 207, one
  /// thread), quadranet-28's first-stage mixer (C = 40) backward 2.04 → 1.38 ms, forward
  /// unchanged (`bench ops --ops normalizedQuadraticDepthwiseConv2D --variant '[64,'`), and its
  /// training step 1114–1144 → 1164–1183 img/s (medians, three alternations; README, Stop 35).
  /// The portable build always uses 8: it assumes no wide vectors.
  static func preferredLanes(channels: Int, isa: CPUInfo.VectorISA, fullWidth512: Bool = false) -> Int {
    #if QUADRANET_PORTABLE
      return 8
    #else
      guard isa >= .avx512 else { return 8 }
      if fullWidth512 { return 16 }
      let padded = (channels + 15) / 16 * 16
      return (padded - channels) * 8 <= padded ? 16 : 8
    #endif
  }

  /// `QUADRANET_DEPTHWISE_LANES=8` or `16` forces a block width for the whole process (for
  /// comparing the two on one machine; 16 without AVX-512 is correct but slow); read once.
  static let environmentLanes: Int? = {
    guard let value = ProcessInfo.processInfo.environment["QUADRANET_DEPTHWISE_LANES"] else { return nil }
    return value == "8" || value == "16" ? Int(value) : nil
  }()

  /// Forces a block width inside a task (tests run both widths on any machine this way). Read
  /// when a ``Shape`` is made, on the calling thread, so it also holds on the worker threads.
  @TaskLocal static var lanesOverride: Int?

  /// The block width a kernel call uses for `channels` channels.
  static func lanes(channels: Int) -> Int {
    lanesOverride ?? environmentLanes
      ?? preferredLanes(
        channels: channels, isa: CPUInfo.current.kernelVectorISA, fullWidth512: CPUInfo.current.fullWidth512)
  }

  /// Whether this build on this processor has the 32 vector registers the paired weight-gradient tile (and
  /// the quadratic mixer's shared-input 3×3 tiles) need.
  static let pairsWeightRows: Bool = {
    #if QUADRANET_PORTABLE
      return false
    #else
      return CPUInfo.current.kernelVectorISA >= .avx512
    #endif
  }()

  /// Forces the paired weight-gradient tile on or off inside a task (tests run both on any machine).
  /// Read when a ``Shape`` is made, on the calling thread.
  @TaskLocal static var weightRowPairsOverride: Bool?

  /// Forces the in-place 7×7 weight gradient's two-row tile (``Shape/pairsUnpaddedWeightRows``; 16-lane blocks only)
  /// on or off inside a task (tests run both on any machine). Read when a ``Shape`` is made, on the calling thread.
  @TaskLocal static var unpaddedWeightRowPairsOverride: Bool?

  /// Turns the 7×7 passes that read their input rows in place (``Kernels/inPlaceTiling(_:)``: the forward pass, and
  /// `∂L/∂y` in the fused backward) off (`false`) inside a task, so tests and benchmarks compare them with the
  /// ring's passes on the same shapes. Read on the calling thread when a pass starts.
  @TaskLocal static var rowsInPlaceOverride: Bool?

  /// Forces the 3×3 tiles that run two or three convolutions of the same input at once
  /// (``Shape/sharesInputs``) on or off inside a task (tests run both on any machine). Read when a
  /// ``Shape`` is made, on the calling thread.
  @TaskLocal static var sharedInputTilesOverride: Bool?

  // MARK: Streaming stores

  /// Forces streaming stores on (`true`) or off (`false`) inside a task, whatever the sizes (tests run
  /// both store paths on small shapes this way); nil lets ``streamsOutput(_:tensorsRead:shape:)`` decide.
  @TaskLocal static var streamingOverride: Bool?

  /// Whether a kernel that reads `tensorsRead` tensors of the shape's size and writes `output`
  /// (same size) writes it with streaming stores, which skip reading each output line before it
  /// is overwritten and do not keep it in the caches.
  ///
  /// Only where every store is one whole, aligned 64-byte line — `output` 64-byte aligned and each
  /// NHWC row a whole number of lines (`W · C` a multiple of 16) — and only when the tensors the kernel
  /// streams through are larger than a level-3 cache: `(tensorsRead + 1) · N·H·W·C · 4 B >` the threshold.
  /// Then the first output lines would have left the caches before the kernel ends anyway, so the
  /// next operation loses little, and the kernel saves one of its memory passes (the read for ownership of
  /// every output line): at N = 32, 56×56, C = 64 on Zen 4 the forward pass went from 0.64–0.71 to
  /// 0.72–0.75 of the FMA peak and the fused backward from 0.63–0.69 to 0.71–0.74 (one thread, loaded
  /// machine). Smaller outputs are stored normally so that the next operation finds them in the caches.
  /// Full 16-lane blocks stream each tile directly, past the L3 this process can count on
  /// (``streamingThresholdBytes(level3CacheBytes:processors:)``); other blocks (8 lanes, or a partial last
  /// block) write their tiles to a staging row and stream the row out once it is complete
  /// (``Shape/stagesRows``), only past the whole reported L3: that copy costs a load and a store per float,
  /// and in an AVX2 build on the 2-vCPU Intel Xeon (8-lane blocks) streaming those rows past the smaller bound
  /// made the 7×7 passes slower, not faster (`bench kernels`, six alternations, best: `dwconv7_forward` 0.81 →
  /// 0.70, `dwconv7_backward` 0.76 → 0.67; lower in four and five of the six adjacent pairs).
  static func streamsOutput(_ output: UnsafeMutablePointer<Float>, tensorsRead: Int, shape s: Shape) -> Bool {
    guard (s.width * s.channels) % 16 == 0 && Int(bitPattern: output) % 64 == 0 else { return false }
    if let streamingOverride { return streamingOverride }
    let tensorBytes = s.rows * s.width * s.channels * MemoryLayout<Float>.stride
    return (tensorsRead + 1) * tensorBytes > (s.stagesRows ? CPUInfo.current.level3CacheBytes : streamingThreshold)
  }

  /// ``streamingThresholdBytes(level3CacheBytes:processors:)`` for this machine, read once.
  static let streamingThreshold = streamingThresholdBytes(
    level3CacheBytes: CPUInfo.current.level3CacheBytes, processors: ProcessInfo.activeCoreCount)

  /// The level-3 cache the tensors of one depthwise call whose tiles stream directly (16-lane blocks) can count on: the
  /// reported L3, but at most 4 MiB per processor this process may run on — about one core's share of a server's L3
  /// (Intel Xeon 1.9–5 MiB per core, AMD EPYC 4 MiB). A virtual machine reports its host socket's whole L3 (260–300 MiB
  /// on the 2-vCPU Intel Xeon VMs here), which other tenants share: a 25.7 MB output stored normally was not waiting in
  /// L3 for the next operation there, and its read for ownership cost more than that operation's cache hits saved.
  /// Measured on an Intel Xeon (family 6 model 207, 2 vCPUs, one thread, a probe alternating both stores call by call,
  /// 20–40 calls, best): N = 32, 56×56, C = 64 forward 6.78 → 5.11 ms, forward then the LayerNorm that reads its output
  /// 11.84 → 10.05 ms, backward 11.46 → 10.68 ms, backward then an add that reads `∂L/∂x` 18.16 → 16.54 ms; N = 16,
  /// 56×56, C = 96 (convnext-t's first stage) forward + LayerNorm 9.28 → 7.97 ms, backward + add 13.65 → 12.80 ms;
  /// at N = 16, 28×28, C = 192 (4.8 MB tensors) even (3.80 → 3.76 and 6.24 → 6.42 ms); at 14×14×384 (1.2 MB)
  /// streaming lost (1.46 → 1.79 and 3.00 → 3.22 ms), which the bound (8 MiB on two processors) keeps normal.
  static func streamingThresholdBytes(level3CacheBytes: Int, processors: Int) -> Int {
    Swift.min(level3CacheBytes, Swift.max(1, processors) * (4 << 20))
  }

  // MARK: Geometry and packing

  /// Sizes of one depthwise convolution and of its channel-blocked scratch rows.
  struct Shape {
    let batch: Int, height: Int, width: Int, channels: Int, kernelSize: Int
    /// Lanes per channel block: 8 or 16 (the vector the kernels run on).
    let lanes: Int
    /// Whether the 7-tap weight-gradient tile takes two kernel rows per pass (29 vector registers:
    /// only with AVX-512's 32, where it is faster; AVX2 has 16). The fused backward pass uses it only for
    /// 8-lane blocks; 16-lane blocks, and 8-lane blocks without it, read the input in place for the 7×7
    /// weight gradient instead of copying it into a ring
    /// (``Kernels/weightRowUnpadded(rows:khRange:outputGradient:gradientBlockStride:partial:shape:hasBias:)``).
    let pairsWeightRows: Bool
    /// Whether the quadratic mixer's 3×3 tiles accumulate its convolutions of the same input together
    /// (``Kernels/accumulate3(_:_:_:_:_:_:_:_:_:_:_:)`` with `n` = 2 or 3: up to 31 vector registers, so
    /// only with AVX-512's 32; AVX2 runs them one after another).
    let sharesInputs: Bool
    /// Whether the 7×7 weight gradient read in place takes two kernel rows per pass
    /// (``Kernels/weightTile7UnpaddedPair(_:_:stride:_:gradientStride:_:_:_:)``): 16-lane blocks where a 512-bit FMA
    /// is full width (``CPUInfo/fullWidth512``), so that 14 accumulator chains, not 7, keep both FMA pipes busy.
    let pairsUnpaddedWeightRows: Bool

    init(batch: Int, height: Int, width: Int, channels: Int, kernelSize: Int, op: String) {
      opPrecondition(
        kernelSize >= 1 && kernelSize % 2 == 1, "\(op): kernel size must be odd and positive, got \(kernelSize)")
      opPrecondition(
        batch >= 0 && height >= 1 && width >= 1 && channels >= 1,
        "\(op): bad input shape [\(batch), \(height), \(width), \(channels)]")
      self.batch = batch
      self.height = height
      self.width = width
      self.channels = channels
      self.kernelSize = kernelSize
      lanes = DepthwiseConvolution.lanes(channels: channels)
      pairsWeightRows = DepthwiseConvolution.weightRowPairsOverride ?? DepthwiseConvolution.pairsWeightRows
      sharesInputs = DepthwiseConvolution.sharedInputTilesOverride ?? DepthwiseConvolution.pairsWeightRows
      pairsUnpaddedWeightRows =
        lanes == 16
        && (DepthwiseConvolution.unpaddedWeightRowPairsOverride
          ?? (DepthwiseConvolution.pairsWeightRows && CPUInfo.current.fullWidth512))
    }

    var padding: Int { kernelSize / 2 }
    var blocks: Int { (channels + lanes - 1) / lanes }
    var rows: Int { batch * height }
    /// Floats of one channel block of one padded row.
    var blockRowCount: Int { (width + 2 * padding) * lanes }
    /// Floats of one padded, blocked row (all channel blocks).
    var paddedRowCount: Int { blocks * blockRowCount }
    /// Floats of the packed weight `[blocks][k][k][lanes]`.
    var packedWeightCount: Int { blocks * kernelSize * kernelSize * lanes }
    /// Floats of the packed bias `[blocks][lanes]`.
    var packedBiasCount: Int { blocks * lanes }
    var flopsPerRow: Int { 2 * width * channels * kernelSize * kernelSize }

    /// Whether a streamed output row goes through a staging row: a tile of 8-lane or partial blocks is
    /// half a cache line or less per column, and a streaming store of part of a line makes the processor
    /// write the partial line out (the rest of the line is another block's, written much later).
    var stagesRows: Bool { !(lanes == 16 && channels % 16 == 0) }
    /// Floats of one thread's staging row (``stagesRows``), zero where tiles stream directly.
    var stagingCount: Int { stagesRows ? width * channels : 0 }

    /// Per-thread chunks of output rows: enough work per chunk to pay for a dispatch.
    var chunks: Int {
      let minimumRows = Swift.max(1, (1 << 18) / Swift.max(flopsPerRow, 1))
      return Swift.max(1, Swift.min(Parallel.threadCount, rows / minimumRows))
    }

    /// Chunks of rows for the kernels that sum weight-gradient partials per chunk: fixed by the shape,
    /// never by the thread count, so the partials are added in the same order — the same bits — on any
    /// number of threads (the worker pool hands the chunks to whichever threads there are). At most
    /// ``maximumReductionChunks``, each with enough work to pay for a dispatch and at least `2k` rows, so
    /// the halo rows a chunk copies again stay a small fraction of its work.
    var reductionChunks: Int {
      let minimumRows = Swift.max(2 * kernelSize, (1 << 18) / Swift.max(flopsPerRow, 1))
      return Swift.max(1, Swift.min(Self.maximumReductionChunks, rows / minimumRows))
    }

    /// The most chunks ``reductionChunks`` makes: 8, so machines of up to 8 cores use them all while a
    /// single thread pays for at most 8 chunks' halo copies and partials.
    static let maximumReductionChunks = 8

    /// The kernel rows `kh` whose input row `h + kh − p` lies inside the image, for output row `h`.
    func kernelRows(at h: Int) -> Range<Int> {
      Swift.max(0, padding - h)..<Swift.min(kernelSize, height + padding - h)
    }

    func chunkRows(_ chunk: Int) -> Range<Int> { chunkRows(chunk, of: chunks) }

    /// Output rows of chunk `chunk` when the rows are split into `count` contiguous chunks.
    func chunkRows(_ chunk: Int, of count: Int) -> Range<Int> {
      (rows * chunk / count)..<(rows * (chunk + 1) / count)
    }
  }

  /// Repacks `weight` `[k, k, C]` as `[blocks][k][k][lanes]` with zero lanes past `C`;
  /// `flipped` mirrors both spatial axes (for the input gradient).
  static func packWeight(
    _ weight: UnsafePointer<Float>, into packed: UnsafeMutablePointer<Float>, shape s: Shape, flipped: Bool
  ) {
    let k = s.kernelSize, C = s.channels, L = s.lanes
    packed.initialize(repeating: 0, count: s.packedWeightCount)
    // Block by block (no division by the run-time lane count per element).
    for block in 0..<s.blocks {
      let first = block * L, count = Swift.min(L, C - first)
      for tap in 0..<(k * k) {
        let source = weight + (flipped ? k * k - 1 - tap : tap) * C + first
        (packed + (block * k * k + tap) * L).update(from: source, count: count)
      }
    }
  }

  /// Copies `bias` `[C]` (zeros when nil) into `blocks · lanes` floats with zero lanes past `C`.
  static func packBias(_ bias: UnsafePointer<Float>?, into packed: UnsafeMutablePointer<Float>, shape s: Shape) {
    packed.initialize(repeating: 0, count: s.packedBiasCount)
    if let bias { packed.update(from: bias, count: s.channels) }
  }

  /// Calls `body(T, firstColumn)` for the column tiles of one row: 7 wide for the 7×7 kernel (when
  /// `W ≥ 7`); for other kernels 7 wide when `W` is a multiple of 7 but not of 8 (the 28×28 models'
  /// 14- and 7-column rows, which 8- or 4-wide tiles cover only by recomputing 2 or 1 columns), else 8
  /// or 4 wide; a row narrower than 4 is one tile of its width (a 3-column row in 1-wide tiles would
  /// run each accumulator as one dependent chain of FMAs). Each branch passes `T` as a literal, so
  /// inlined tile code is specialized for it.
  @inline(__always)
  static func forEachColumnTile(_ s: Shape, _ body: (Int, Int) -> Void) {
    let W = s.width
    if s.kernelSize == 7 && W >= 7 || W % 7 == 0 && W % 8 != 0 {
      forEachTile(width: W, tile: 7) { body(7, $0) }
    } else if W >= 8 {
      forEachTile(width: W, tile: 8) { body(8, $0) }
    } else if W >= 4 {
      forEachTile(width: W, tile: 4) { body(4, $0) }
    } else if W == 3 {
      body(3, 0)
    } else if W == 2 {
      body(2, 0)
    } else {
      forEachTile(width: W, tile: 1) { body(1, $0) }
    }
  }

  /// The most 8-column tiles a row of `W` columns can take with the rest in whole 7-column tiles, or nil
  /// when none can (`W` = 7, 14, 28 among the models' rows: those keep 7-column tiles). The plain 7×7
  /// convolution's 8-lane row kernel takes them (``Kernels/eightColumnRowTiles(_:)``).
  static func eightColumnTiles(width W: Int) -> Int? {
    var eights = W / 8
    while eights > 0 && (W - 8 * eights) % 7 != 0 { eights -= 1 }
    return eights > 0 ? eights : nil
  }

  /// Calls `body(firstColumn)` for tiles of `tile` columns covering `0..<width` (`width ≥ tile`).
  /// When `width` is not a multiple of `tile` the last tile overlaps the previous one: it
  /// recomputes a few columns (each tile writes, never accumulates) but runs at full width.
  @inline(__always)
  static func forEachTile(width: Int, tile: Int, _ body: (Int) -> Void) {
    var w0 = 0
    while w0 + tile <= width {
      body(w0)
      w0 += tile
    }
    if w0 < width { body(width - tile) }
  }

  // MARK: Forward

  /// `output = depthwise(input, weight) + bias`; `output` is fully overwritten.
  public static func forward(
    input: UnsafePointer<Float>, weight: UnsafePointer<Float>, bias: UnsafePointer<Float>?,
    output: UnsafeMutablePointer<Float>,
    batch: Int, height: Int, width: Int, channels: Int, kernelSize: Int
  ) {
    let s = Shape(
      batch: batch, height: height, width: width, channels: channels, kernelSize: kernelSize, op: "depthwiseConv2D")
    convolve(input: input, weight: weight, flipped: false, bias: bias, output: output, shape: s)
  }

  /// The forward kernel at the shape's vector width (optionally with the weight mirrored).
  static func convolve(
    input: UnsafePointer<Float>, weight: UnsafePointer<Float>, flipped: Bool, bias: UnsafePointer<Float>?,
    output: UnsafeMutablePointer<Float>, shape s: Shape
  ) {
    if s.lanes == 16 {
      Kernels<SIMD16<Float>>.convolve(input: input, weight: weight, flipped: flipped, bias: bias, output: output, shape: s)
    } else {
      Kernels<SIMD8<Float>>.convolve(input: input, weight: weight, flipped: flipped, bias: bias, output: output, shape: s)
    }
  }

  // MARK: Backward

  /// `inputGradient = ∂L/∂x`, the "same" correlation of `outputGradient` with the kernel
  /// flipped in both spatial directions:
  /// `dx[n, h, w, c] = Σ_{i,j} dy[n, h + i − p, w + j − p, c] · W[k−1−i, k−1−j, c]`
  /// (the forward kernel with the weight packed mirrored). `inputGradient` is overwritten.
  public static func backwardInput(
    outputGradient: UnsafePointer<Float>, weight: UnsafePointer<Float>,
    inputGradient: UnsafeMutablePointer<Float>,
    batch: Int, height: Int, width: Int, channels: Int, kernelSize: Int
  ) {
    let s = Shape(
      batch: batch, height: height, width: width, channels: channels, kernelSize: kernelSize,
      op: "depthwiseConv2D backward")
    convolve(input: outputGradient, weight: weight, flipped: true, bias: nil, output: inputGradient, shape: s)
  }

  /// `weightGradient[i, j, c] = Σ_{n,h,w} x[n, h + i − p, w + j − p, c] · dy[n, h, w, c]` and,
  /// when `biasGradient` is given, `biasGradient[c] = Σ_{n,h,w} dy[n, h, w, c]`; both are overwritten.
  ///
  /// Threads take disjoint ranges of output rows and sum into private packed partials,
  /// which are added up in a fixed order at the end (no races, no dependence on timing).
  public static func backwardWeight(
    input: UnsafePointer<Float>, outputGradient: UnsafePointer<Float>,
    weightGradient: UnsafeMutablePointer<Float>, biasGradient: UnsafeMutablePointer<Float>?,
    batch: Int, height: Int, width: Int, channels: Int, kernelSize: Int
  ) {
    let s = Shape(
      batch: batch, height: height, width: width, channels: channels, kernelSize: kernelSize,
      op: "depthwiseConv2D backward")
    if s.lanes == 16 {
      Kernels<SIMD16<Float>>.backwardWeight(
        input: input, outputGradient: outputGradient, weightGradient: weightGradient, biasGradient: biasGradient,
        shape: s)
    } else {
      Kernels<SIMD8<Float>>.backwardWeight(
        input: input, outputGradient: outputGradient, weightGradient: weightGradient, biasGradient: biasGradient,
        shape: s)
    }
  }

  /// Both gradients in one pass over the rows: `inputGradient` as in
  /// ``backwardInput(outputGradient:weight:inputGradient:batch:height:width:channels:kernelSize:)``
  /// (skipped when nil), `weightGradient` and `biasGradient` as in
  /// ``backwardWeight(input:outputGradient:weightGradient:biasGradient:batch:height:width:channels:kernelSize:)``.
  ///
  /// The two passes each read `∂L/∂y` and copy it into padded channel-blocked rows; here each
  /// `∂L/∂y` row is copied once into a ring of `k + 1` padded rows, adds its weight-gradient
  /// contribution while its `k` input rows are in the input ring, and `p` rows later serves the
  /// input-gradient row that needs it. So `x` and `∂L/∂y` are each read once and `∂L/∂x` written
  /// once: three passes over memory instead of four, which is what bounds this kernel on large
  /// batches. Each thread recomputes the `p` gradient rows on either side of its range (copies only).
  public static func backward(
    input: UnsafePointer<Float>, weight: UnsafePointer<Float>, outputGradient: UnsafePointer<Float>,
    inputGradient: UnsafeMutablePointer<Float>?, weightGradient: UnsafeMutablePointer<Float>,
    biasGradient: UnsafeMutablePointer<Float>?,
    batch: Int, height: Int, width: Int, channels: Int, kernelSize: Int
  ) {
    let s = Shape(
      batch: batch, height: height, width: width, channels: channels, kernelSize: kernelSize,
      op: "depthwiseConv2D backward")
    guard let inputGradient else {
      backwardWeight(
        input: input, outputGradient: outputGradient, weightGradient: weightGradient, biasGradient: biasGradient,
        batch: batch, height: height, width: width, channels: channels, kernelSize: kernelSize)
      return
    }
    backward(
      input: input, weight: weight, outputGradient: outputGradient, inputGradient: inputGradient,
      weightGradient: weightGradient, biasGradient: biasGradient, shape: s, chunks: s.reductionChunks)
  }

  /// The fused backward pass with the rows split into `chunks` ranges (tests force several).
  static func backward(
    input: UnsafePointer<Float>, weight: UnsafePointer<Float>, outputGradient: UnsafePointer<Float>,
    inputGradient: UnsafeMutablePointer<Float>, weightGradient: UnsafeMutablePointer<Float>,
    biasGradient: UnsafeMutablePointer<Float>?, shape s: Shape, chunks: Int
  ) {
    if s.lanes == 16 {
      Kernels<SIMD16<Float>>.backward(
        input: input, weight: weight, outputGradient: outputGradient, inputGradient: inputGradient,
        weightGradient: weightGradient, biasGradient: biasGradient, shape: s, chunks: chunks)
    } else {
      Kernels<SIMD8<Float>>.backward(
        input: input, weight: weight, outputGradient: outputGradient, inputGradient: inputGradient,
        weightGradient: weightGradient, biasGradient: biasGradient, shape: s, chunks: chunks)
    }
  }

  /// Floats of one thread's packed weight-gradient partial: `[blocks][k][k][lanes]` then `[blocks][lanes]` (bias).
  static func partialCount(_ s: Shape) -> Int { s.packedWeightCount + s.packedBiasCount }

  /// Adds up the per-thread packed partials in a fixed order (chunk 0 first, so the result
  /// does not depend on timing) into the first one, then unpacks it to `[k, k, C]` and `[C]`.
  ///
  /// - Parameters:
  ///   - first: chunk 0's partial; chunk `i`'s is at `first + i · stride`.
  static func reducePartials(
    first total: UnsafeMutablePointer<Float>, stride: Int, chunks: Int, shape s: Shape,
    weightGradient: UnsafeMutablePointer<Float>, biasGradient: UnsafeMutablePointer<Float>?
  ) {
    let k = s.kernelSize, C = s.channels, L = s.lanes
    for chunk in 1..<Swift.max(chunks, 1) {
      addInPlace(total, total + chunk * stride, count: partialCount(s))
    }
    for block in 0..<s.blocks {
      let first = block * L, count = Swift.min(L, C - first)
      for tap in 0..<(k * k) {
        (weightGradient + tap * C + first).update(from: total + (block * k * k + tap) * L, count: count)
      }
    }
    biasGradient?.update(from: total + s.packedWeightCount, count: C)
  }
}
