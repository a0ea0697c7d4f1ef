/// Dense 2-D convolution, channels-last, by im2col + GEMM.
///
/// `y[n, oh, ow, o] = b[o] + Σ_{i,j,c} x[n, oh·sh + i − ph, ow·sw + j − pw, c] · W[o, i, j, c]`
/// with input `[N, H, W, I]`, weight `[O, kh, kw, I]` (OHWI), bias `[O]`, output
/// `[N, OH, OW, O]`, `OH = (H + 2ph − kh) / sh + 1` (likewise `OW`), zero padding.
///
/// Every output pixel's receptive field is gathered into one row of a
/// `[N·OH·OW, kh·kw·I]` matrix ("cols"); in NHWC each kernel row of a patch is a
/// contiguous run of `kw·I` input floats, and OHWI makes a flattened weight row
/// use the same order, so `Y = cols · Wᵀ` is one GEMM. Without padding no patch is
/// clipped and the gather is a plain permutation copy (the 4×4/4 stem and the
/// 2×2/2 downsampling layers); a 1×1/1 convolution uses the input as cols directly.
///
/// Backward: `dW = dYᵀ · cols`, `dcols = dY · W`, `dx = col2im(dcols)` (the sum of
/// the patch gradients back onto the pixels they came from), `db = Σ_rows dY`.
public enum Convolution2D {
  /// Sizes of one convolution; the initializer checks them.
  public struct Geometry: Sendable, Equatable {
    public let batch: Int, height: Int, width: Int, inputChannels: Int
    public let outputChannels: Int, kernelHeight: Int, kernelWidth: Int
    public let strideHeight: Int, strideWidth: Int, paddingHeight: Int, paddingWidth: Int

    public init(
      batch: Int, height: Int, width: Int, inputChannels: Int, outputChannels: Int,
      kernelHeight: Int, kernelWidth: Int, stride: (Int, Int), padding: (Int, Int)
    ) {
      let description =
        "input [\(batch), \(height), \(width), \(inputChannels)], kernel \(kernelHeight)×\(kernelWidth), "
        + "\(outputChannels) outputs, stride \(stride), padding \(padding)"
      opPrecondition(stride.0 >= 1 && stride.1 >= 1, "conv2D: stride must be positive; \(description)")
      opPrecondition(padding.0 >= 0 && padding.1 >= 0, "conv2D: padding must be non-negative; \(description)")
      opPrecondition(
        kernelHeight >= 1 && kernelWidth >= 1 && inputChannels >= 1 && outputChannels >= 1,
        "conv2D: empty kernel; \(description)")
      opPrecondition(
        kernelHeight <= height + 2 * padding.0 && kernelWidth <= width + 2 * padding.1,
        "conv2D: kernel larger than the padded input; \(description)")
      self.batch = batch
      self.height = height
      self.width = width
      self.inputChannels = inputChannels
      self.outputChannels = outputChannels
      self.kernelHeight = kernelHeight
      self.kernelWidth = kernelWidth
      self.strideHeight = stride.0
      self.strideWidth = stride.1
      self.paddingHeight = padding.0
      self.paddingWidth = padding.1
    }

    public var outputHeight: Int { (height + 2 * paddingHeight - kernelHeight) / strideHeight + 1 }
    public var outputWidth: Int { (width + 2 * paddingWidth - kernelWidth) / strideWidth + 1 }
    /// Length of a cols row: `kh · kw · I`.
    public var patchCount: Int { kernelHeight * kernelWidth * inputChannels }
    public var inputShape: [Int] { [batch, height, width, inputChannels] }
    public var weightShape: [Int] { [outputChannels, kernelHeight, kernelWidth, inputChannels] }
    public var outputShape: [Int] { [batch, outputHeight, outputWidth, outputChannels] }

    /// A 1×1 convolution with unit stride and no padding: cols is the input itself.
    var isPointwise: Bool {
      kernelHeight == 1 && kernelWidth == 1 && strideHeight == 1 && strideWidth == 1
        && paddingHeight == 0 && paddingWidth == 0
    }

    /// Images per im2col pass, so the cols scratch stays below ``maximumScratchCount`` floats.
    var imagesPerChunk: Int {
      Swift.max(1, Swift.min(batch, maximumScratchCount / Swift.max(1, outputHeight * outputWidth * patchCount)))
    }
  }

  /// Cap on the cols scratch (floats): larger batches are processed in image chunks.
  ///
  /// Task-local so a test can lower it (`$maximumScratchCount.withValue(64) { … }`) without
  /// changing the chunking of convolutions running concurrently in other tasks.
  @TaskLocal static var maximumScratchCount = 1 << 24

  // MARK: Forward

  /// `output = conv(input, weight) + bias`; `output` (`[N, OH, OW, O]`) is fully overwritten.
  public static func forward(
    input: UnsafePointer<Float>, weight: UnsafePointer<Float>, bias: UnsafePointer<Float>?,
    output: UnsafeMutablePointer<Float>, geometry g: Geometry
  ) {
    if isSingleChannel(g) {
      singleChannelForward(input: input, weight: weight, bias: bias, output: output, geometry: g)
      return
    }
    let pixels = g.outputHeight * g.outputWidth
    let K = g.patchCount, O = g.outputChannels
    forEachImageChunk(g) { images in
      let rows = images.count * pixels
      let out = output + images.lowerBound * pixels * O
      withCols(input: input, images: images, geometry: g) { cols in
        // The bias is added as the tiles are stored (not written first and read back by the product).
        GEMM.multiply(
          m: rows, n: O, k: K, a: cols, lda: K, transposeA: false,
          b: weight, ldb: K, transposeB: true, c: out, ldc: O, alpha: 1, beta: 0, columnBias: bias)
      }
    }
  }

  // MARK: Backward

  /// Gradients of ``forward(input:weight:bias:output:geometry:)``; all outputs are overwritten.
  ///
  /// - Parameters:
  ///   - inputGradient: `∂L/∂x` `[N, H, W, I]`, or nil to skip it (e.g. the first layer).
  ///   - weightGradient: `∂L/∂W` `[O, kh, kw, I]`.
  ///   - biasGradient: `∂L/∂b` `[O]`, or nil.
  public static func backward(
    input: UnsafePointer<Float>, weight: UnsafePointer<Float>, outputGradient: UnsafePointer<Float>,
    inputGradient: UnsafeMutablePointer<Float>?, weightGradient: UnsafeMutablePointer<Float>,
    biasGradient: UnsafeMutablePointer<Float>?, geometry g: Geometry
  ) {
    let pixels = g.outputHeight * g.outputWidth
    let K = g.patchCount, O = g.outputChannels
    if let biasGradient {
      columnSums(outputGradient, rows: g.batch * pixels, columns: O, into: biasGradient)
    }
    if g.batch == 0 { weightGradient.initialize(repeating: 0, count: O * K) }
    let direct = isSingleChannel(g)
    if direct {
      singleChannelWeightGradient(input: input, outputGradient: outputGradient, weightGradient: weightGradient, geometry: g)
    }
    var first = true
    forEachImageChunk(g) { images in
      let rows = images.count * pixels
      let dy = outputGradient + images.lowerBound * pixels * O
      if !direct {
        withCols(input: input, images: images, geometry: g) { cols in
          // dW (+)= dYᵀ · cols: [O, rows] · [rows, K].
          GEMM.multiply(
            m: O, n: K, k: rows, a: dy, lda: O, transposeA: true,
            b: cols, ldb: K, transposeB: false, c: weightGradient, ldc: K, alpha: 1, beta: first ? 0 : 1)
        }
      }
      first = false
      guard let inputGradient else { return }
      let imageCount = g.height * g.width * g.inputChannels
      let dx = inputGradient + images.lowerBound * imageCount
      if g.isPointwise {
        // dcols is dx itself.
        GEMM.multiply(
          m: rows, n: K, k: O, a: dy, lda: O, transposeA: false,
          b: weight, ldb: K, transposeB: false, c: dx, ldc: K, alpha: 1, beta: 0)
        return
      }
      KernelScratch.with(count: rows * K) { dcols in
        GEMM.multiply(
          m: rows, n: K, k: O, a: dy, lda: O, transposeA: false,
          b: weight, ldb: K, transposeB: false, c: dcols, ldc: K, alpha: 1, beta: 0)
        col2im(dcols, into: dx, imageCount: images.count, geometry: g)
      }
    }
  }

  // MARK: Helpers

  static func forEachImageChunk(_ g: Geometry, _ body: (Range<Int>) -> Void) {
    let step = g.imagesPerChunk
    var start = 0
    while start < g.batch {
      let end = Swift.min(g.batch, start + step)
      body(start..<end)
      start = end
    }
  }

  /// Calls `body` with the cols matrix of `images`: the input itself for a pointwise
  /// convolution, otherwise a scratch tensor freed when `body` returns.
  static func withCols(
    input: UnsafePointer<Float>, images: Range<Int>, geometry g: Geometry,
    _ body: (UnsafePointer<Float>) -> Void
  ) {
    let imageCount = g.height * g.width * g.inputChannels
    if g.isPointwise {
      body(input + images.lowerBound * imageCount)
      return
    }
    KernelScratch.with(count: images.count * g.outputHeight * g.outputWidth * g.patchCount) { cols in
      im2col(input + images.lowerBound * imageCount, into: cols, imageCount: images.count, geometry: g)
      body(cols)
    }
  }

  /// Gathers each output pixel's patch into a row of `cols` (`[images·OH·OW, kh·kw·I]`),
  /// zeros where the patch hangs over the padding.
  static func im2col(
    _ input: UnsafePointer<Float>, into cols: UnsafeMutablePointer<Float>, imageCount: Int, geometry g: Geometry
  ) {
    let OH = g.outputHeight, OW = g.outputWidth, H = g.height, W = g.width, I = g.inputChannels
    let KH = g.kernelHeight, KW = g.kernelWidth, sh = g.strideHeight, sw = g.strideWidth
    let ph = g.paddingHeight, pw = g.paddingWidth, K = g.patchCount
    let segment = KW * I
    let unpadded = ph == 0 && pw == 0
    Parallel.forRanges(imageCount * OH, minimumChunk: Swift.max(1, 16384 / Swift.max(1, OW * K))) { range in
      for outputRow in range {
        let n = outputRow / OH, oh = outputRow % OH
        let image = input + n * H * W * I
        for ow in 0..<OW {
          let row = cols + (outputRow * OW + ow) * K
          let iw0 = ow * sw - pw
          if unpadded {
            // Every patch lies inside the image: kh contiguous copies.
            for kh in 0..<KH {
              (row + kh * segment).update(from: image + ((oh * sh + kh) * W + iw0) * I, count: segment)
            }
            continue
          }
          let kwLow = Swift.max(0, -iw0), kwHigh = Swift.min(KW, W - iw0)
          for kh in 0..<KH {
            let ih = oh * sh - ph + kh
            let dst = row + kh * segment
            guard ih >= 0 && ih < H && kwLow < kwHigh else {
              dst.initialize(repeating: 0, count: segment)
              continue
            }
            if kwLow > 0 { dst.initialize(repeating: 0, count: kwLow * I) }
            (dst + kwLow * I).update(from: image + (ih * W + iw0 + kwLow) * I, count: (kwHigh - kwLow) * I)
            if kwHigh < KW { (dst + kwHigh * I).initialize(repeating: 0, count: (KW - kwHigh) * I) }
          }
        }
      }
    }
  }

  /// `dx[pixel] = Σ` of the `dcols` entries that im2col copied from that pixel.
  ///
  /// Written as a gather over input rows (each thread owns whole rows of `dx`), so
  /// overlapping patches need no locks or atomics.
  static func col2im(
    _ dcols: UnsafePointer<Float>, into dx: UnsafeMutablePointer<Float>, imageCount: Int, geometry g: Geometry
  ) {
    let OH = g.outputHeight, OW = g.outputWidth, H = g.height, W = g.width, I = g.inputChannels
    let KH = g.kernelHeight, KW = g.kernelWidth, sh = g.strideHeight, sw = g.strideWidth
    let ph = g.paddingHeight, pw = g.paddingWidth, K = g.patchCount
    Parallel.forRanges(imageCount * H, minimumChunk: Swift.max(1, 16384 / Swift.max(1, W * I * KH))) { range in
      for inputRow in range {
        let n = inputRow / H, ih = inputRow % H
        let target = dx + inputRow * W * I
        target.initialize(repeating: 0, count: W * I)
        for kh in 0..<KH {
          let t = ih + ph - kh
          guard t >= 0, t % sh == 0, t / sh < OH else { continue }
          let oh = t / sh
          for ow in 0..<OW {
            let iw0 = ow * sw - pw
            let kwLow = Swift.max(0, -iw0), kwHigh = Swift.min(KW, W - iw0)
            guard kwLow < kwHigh else { continue }
            let source = dcols + ((n * OH + oh) * OW + ow) * K + (kh * KW + kwLow) * I
            DepthwiseConvolution.addInPlace(target + (iw0 + kwLow) * I, source, count: (kwHigh - kwLow) * I)
          }
        }
      }
    }
  }

  /// `sums[j] = Σ_i matrix[i, j]` for a row-major `rows × columns` matrix, with per-chunk partials
  /// (chunks fixed by the shape, so the sums are the same on any thread count).
  static func columnSums(
    _ matrix: UnsafePointer<Float>, rows: Int, columns: Int, into sums: UnsafeMutablePointer<Float>
  ) {
    let chunks = ElementwiseKernels.reductionChunkCount(
      rows, minimumChunk: Swift.max(1, (1 << 16) / Swift.max(columns, 1)), partialSize: columns)
    KernelScratch.with(count: chunks * columns, zeroed: true) { base in
      Parallel.forEach(chunks) { chunk in
        let partial = base + chunk * columns
        for i in (rows * chunk / chunks)..<(rows * (chunk + 1) / chunks) {
          DepthwiseConvolution.addInPlace(partial, matrix + i * columns, count: columns)
        }
      }
      sums.update(from: base, count: columns)
      for chunk in 1..<chunks { DepthwiseConvolution.addInPlace(sums, base + chunk * columns, count: columns) }
    }
  }
}
