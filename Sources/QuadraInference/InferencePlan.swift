import Foundation
import QuadraCore
import QuadraModels

/// Folded weights, in storage charged to the memory tracker current at compilation.
final class WeightStore {
  private(set) var buffers: [TensorBuffer] = []
  private(set) var byteCount = 0

  func store(_ values: [Float]) -> UnsafePointer<Float> {
    let buffer = TensorBuffer(count: Swift.max(values.count, 1))
    values.withUnsafeBufferPointer { source in
      if let base = source.baseAddress { buffer.pointer.update(from: base, count: values.count) }
    }
    buffers.append(buffer)
    byteCount += buffer.byteCount
    return UnsafePointer(buffer.pointer)
  }

  /// Packs a PyTorch-layout weight `[outputs, inputs]` as the GEMM operand `op(B) = Wᵀ` (`inputs × outputs`).
  func pack(_ weight: [Float], outputs: Int, inputs: Int) -> GEMM.PackedMatrix {
    let packed = weight.withUnsafeBufferPointer {
      GEMM.PackedMatrix(k: inputs, n: outputs, b: $0.baseAddress!, ldb: inputs, transposeB: true)
    }
    byteCount += inputs * outputs * MemoryLayout<Float>.stride
    return packed
  }
}

/// The model's parameters by their PyTorch names, shape-checked on access.
struct ParameterTable {
  let tensors: [String: Tensor]

  init(model: VisionModel) {
    var tensors: [String: Tensor] = [:]
    for (name, parameter) in model.namedParameters() { tensors[name] = parameter.variable.value }
    self.tensors = tensors
  }

  func values(_ name: String, shape: [Int]) throws -> [Float] {
    guard let tensor = tensors[name] else {
      throw InferenceError.invalidModel(reason: "missing parameter \(name) (not a VisionModel layout?)")
    }
    guard tensor.shape == shape else {
      throw InferenceError.invalidModel(reason: "parameter \(name) has shape \(tensor.shape), expected \(shape)")
    }
    return tensor.scalars
  }
}

// MARK: Weight folding (all in Double, rounded once)

enum Folding {
  /// LayerNorm's affine part into the linear map `W` `[outputs, inputs]` that follows it:
  /// `W' = W diag(γ)`, `b' = b + W β`. `gamma`/`beta` have `inputs` entries (tiled when the map
  /// reads several normalized pixels, as the 2×2 downsampling does).
  static func normalization(
    into weight: [Float], bias: [Float], outputs: Int, inputs: Int, gamma: [Float], beta: [Float]
  ) -> (weight: [Float], bias: [Float]) {
    var folded = weight
    var foldedBias = bias
    for o in 0..<outputs {
      var shift = Double(bias[o])
      for i in 0..<inputs {
        shift += Double(weight[o * inputs + i]) * Double(beta[i])
        folded[o * inputs + i] = weight[o * inputs + i] * gamma[i]
      }
      foldedBias[o] = Float(shift)
    }
    return (folded, foldedBias)
  }

  /// A per-output scale (layer scale γ, gⁿConv's s) into the map before it: row `o` of `W` and `b[o]`
  /// times `scale[o]`. `weight` is `[outputs, inner]`, or `[taps, outputs]` (depthwise `[k, k, C]`)
  /// when `outputsLast`.
  static func scale(_ values: [Float], by scale: [Float], outputsLast: Bool) -> [Float] {
    let outputs = scale.count
    let inner = values.count / outputs
    var result = values
    for index in result.indices {
      result[index] *= scale[outputsLast ? index % outputs : index / inner]
    }
    return result
  }

  static func tiled(_ values: [Float], times: Int) -> [Float] {
    Array([[Float]](repeating: values, count: times).joined())
  }
}

// MARK: Steps

/// Spatial size and width of one stage's activations.
struct StageGeometry: Equatable {
  let height: Int, width: Int, channels: Int
  var pixels: Int { height * width }
}

/// The patchify (or overlapping) stem: k×k convolution, stride s, padding p, then LayerNorm.
struct StemStep {
  let kernel: Int, stride: Int, padding: Int, inputChannels: Int, outputChannels: Int
  let weight: GEMM.PackedMatrix
  let bias: UnsafePointer<Float>
  let normWeight: UnsafePointer<Float>, normBias: UnsafePointer<Float>
  var patchCount: Int { kernel * kernel * inputChannels }

  func outputSize(_ size: Int) -> Int { (size + 2 * padding - kernel) / stride + 1 }
}

/// LayerNorm then 2×2 stride-2 convolution, with the LN's affine part folded into the convolution.
struct DownsampleStep {
  let inputChannels: Int, outputChannels: Int
  let weight: GEMM.PackedMatrix
  let bias: UnsafePointer<Float>
}

/// `x + pwconv2'(GELU(pwconv1'(x̂)))` with LN's affine part in `pwconv1'` and the layer scale in `pwconv2'`.
struct MLPStep {
  let channels: Int, hidden: Int
  let expand: GEMM.PackedMatrix, expandBias: UnsafePointer<Float>
  let project: GEMM.PackedMatrix, projectBias: UnsafePointer<Float>
}

struct GnConvStep {
  let dims: [Int]
  /// `proj_in` split into its first `dims[0]` outputs (p₀) and the rest (q), LN folded into both.
  let projectP: GEMM.PackedMatrix, projectPBias: UnsafePointer<Float>
  let projectQ: GEMM.PackedMatrix, projectQBias: UnsafePointer<Float>
  /// The 7×7 depthwise weight `[7, 7, Σdims]` and bias, times the scale s.
  let depthwiseWeight: UnsafePointer<Float>, depthwiseBias: UnsafePointer<Float>
  let pws: [(weight: GEMM.PackedMatrix, bias: UnsafePointer<Float>)]
  /// `proj_out` with the layer scale γ₁ folded in.
  let projectOut: GEMM.PackedMatrix, projectOutBias: UnsafePointer<Float>
  var gateWidth: Int { dims.reduce(0, +) }
  /// Column of gate `i` in the depthwise output.
  func gateOffset(_ i: Int) -> Int { dims[..<i].reduce(0, +) }
}

enum MixerStep {
  /// LN₁ (with affine) then `(W_a∗x + b_a) ⊙ (W_b∗x + b_b) + W_c∗x + b_c`, γ₁ folded into a and c.
  case quadratic(
    kernel: Int, normWeight: UnsafePointer<Float>, normBias: UnsafePointer<Float>,
    weights: QuadraticDepthwiseConvolution.Pointers, biases: QuadraticDepthwiseConvolution.Pointers)
  case gnConv(GnConvStep)
  /// ConvNeXt: the depthwise convolution comes before the block's only LN (which is in the MLP).
  case depthwise(kernel: Int, weight: UnsafePointer<Float>, bias: UnsafePointer<Float>)
}

struct BlockStep {
  let mixer: MixerStep
  let mlp: MLPStep
}

struct StagePlan {
  let channels: Int
  let downsample: DownsampleStep?
  let blocks: [BlockStep]
}

/// Global mean pooling, the final LN (affine folded) and the head.
struct HeadStep {
  let channels: Int, classes: Int
  let weight: GEMM.PackedMatrix
  let bias: UnsafePointer<Float>
}

// MARK: Plan

/// The compiled model: folded weights and the steps that use them.
final class InferencePlan {
  let config: ModelConfig
  let epsilon: Float
  let stem: StemStep
  let stages: [StagePlan]
  let head: HeadStep
  let weights: WeightStore
  var weightBytes: Int { weights.byteCount }

  /// Rows per chunk at most; a step uses fewer when its widest row is wide (so a chunk stays in L2).
  static let maximumChunkRows = 192
  /// Floats of a chunk's widest buffer a step aims for (512 KiB, half of a Zen 4 L2).
  static let chunkFloats = 1 << 17

  init(model: VisionModel) throws {
    let config = model.config
    self.config = config
    epsilon = model.norm.epsilon
    let table = ParameterTable(model: model)
    let store = WeightStore()
    weights = store
    let widths = config.widths

    // Stem: conv [C0, k, k, Cin] then LN (kept: it feeds a residual stream, not a linear map).
    let k = config.stemKernel, cin = config.inputChannels
    stem = StemStep(
      kernel: k, stride: config.stemPatchSize, padding: config.stemPadding, inputChannels: cin,
      outputChannels: widths[0],
      weight: store.pack(
        try table.values("downsample_layers.0.0.weight", shape: [widths[0], k, k, cin]), outputs: widths[0],
        inputs: k * k * cin),
      bias: store.store(try table.values("downsample_layers.0.0.bias", shape: [widths[0]])),
      normWeight: store.store(try table.values("downsample_layers.0.1.weight", shape: [widths[0]])),
      normBias: store.store(try table.values("downsample_layers.0.1.bias", shape: [widths[0]])))

    var stages: [StagePlan] = []
    for (stage, depth) in config.depths.enumerated() {
      let c = widths[stage]
      var downsample: DownsampleStep?
      if stage > 0 {
        let p = "downsample_layers.\(stage)."
        let previous = widths[stage - 1]
        let gamma = try table.values(p + "0.weight", shape: [previous])
        let beta = try table.values(p + "0.bias", shape: [previous])
        let folded = Folding.normalization(
          into: try table.values(p + "1.weight", shape: [c, 2, 2, previous]),
          bias: try table.values(p + "1.bias", shape: [c]), outputs: c, inputs: 4 * previous,
          gamma: Folding.tiled(gamma, times: 4), beta: Folding.tiled(beta, times: 4))
        downsample = DownsampleStep(
          inputChannels: previous, outputChannels: c,
          weight: store.pack(folded.weight, outputs: c, inputs: 4 * previous), bias: store.store(folded.bias))
      }
      var blocks: [BlockStep] = []
      for block in 0..<depth {
        let p = "stages.\(stage).\(block)."
        blocks.append(
          try Self.compileBlock(
            prefix: p, mixer: config.mixers[stage], channels: c, mlpRatio: config.mlpRatio, table: table, store: store))
      }
      stages.append(StagePlan(channels: c, downsample: downsample, blocks: blocks))
    }
    self.stages = stages

    let last = widths[widths.count - 1]
    let head = Folding.normalization(
      into: try table.values("head.weight", shape: [config.classCount, last]),
      bias: try table.values("head.bias", shape: [config.classCount]), outputs: config.classCount, inputs: last,
      gamma: try table.values("norm.weight", shape: [last]), beta: try table.values("norm.bias", shape: [last]))
    self.head = HeadStep(
      channels: last, classes: config.classCount,
      weight: store.pack(head.weight, outputs: config.classCount, inputs: last), bias: store.store(head.bias))
  }

  private static func compileBlock(
    prefix p: String, mixer: TokenMixer, channels c: Int, mlpRatio: Int, table: ParameterTable, store: WeightStore
  ) throws -> BlockStep {
    let hidden = mlpRatio * c
    // ConvNeXt names its only LN `norm` and its layer scale `gamma`; the mixer blocks `norm2` and `gamma2`.
    let isConvNeXt: Bool = { if case .depthwise = mixer { return true } else { return false } }()
    let mlpNorm = isConvNeXt ? "norm" : "norm2"
    let mlpScale = try table.values(p + (isConvNeXt ? "gamma" : "gamma2"), shape: [c])
    let expand = Folding.normalization(
      into: try table.values(p + "pwconv1.weight", shape: [hidden, c]),
      bias: try table.values(p + "pwconv1.bias", shape: [hidden]), outputs: hidden, inputs: c,
      gamma: try table.values(p + mlpNorm + ".weight", shape: [c]),
      beta: try table.values(p + mlpNorm + ".bias", shape: [c]))
    let projectWeight = Folding.scale(
      try table.values(p + "pwconv2.weight", shape: [c, hidden]), by: mlpScale, outputsLast: false)
    let projectBias = Folding.scale(try table.values(p + "pwconv2.bias", shape: [c]), by: mlpScale, outputsLast: false)
    let mlp = MLPStep(
      channels: c, hidden: hidden,
      expand: store.pack(expand.weight, outputs: hidden, inputs: c), expandBias: store.store(expand.bias),
      project: store.pack(projectWeight, outputs: c, inputs: hidden), projectBias: store.store(projectBias))

    switch mixer {
    case .quadratic(let kernel):
      let gamma = try table.values(p + "gamma1", shape: [c])
      let q = p + "QuadraConv."
      func convolution(_ index: Int, scaled: Bool) throws -> (UnsafePointer<Float>, UnsafePointer<Float>) {
        var weight = try table.values(q + "conv\(index).weight", shape: [kernel, kernel, c])
        var bias = try table.values(q + "conv\(index).bias", shape: [c])
        if scaled {
          weight = Folding.scale(weight, by: gamma, outputsLast: true)
          bias = Folding.scale(bias, by: gamma, outputsLast: true)
        }
        return (store.store(weight), store.store(bias))
      }
      let a = try convolution(1, scaled: true), b = try convolution(2, scaled: false), cc = try convolution(3, scaled: true)
      return BlockStep(
        mixer: .quadratic(
          kernel: kernel, normWeight: store.store(try table.values(p + "norm1.weight", shape: [c])),
          normBias: store.store(try table.values(p + "norm1.bias", shape: [c])), weights: (a.0, b.0, cc.0),
          biases: (a.1, b.1, cc.1)),
        mlp: mlp)

    case .gnConv(let order, let scale):
      let g = p + "gnconv."
      let dims = (0..<order).map { c >> $0 }.reversed() as [Int]
      let gateWidth = dims.reduce(0, +)
      let projectIn = Folding.normalization(
        into: try table.values(g + "proj_in.weight", shape: [2 * c, c]),
        bias: try table.values(g + "proj_in.bias", shape: [2 * c]), outputs: 2 * c, inputs: c,
        gamma: try table.values(p + "norm1.weight", shape: [c]), beta: try table.values(p + "norm1.bias", shape: [c]))
      let split = dims[0] * c
      let scaleVector = [Float](repeating: scale, count: gateWidth)
      var pws: [(weight: GEMM.PackedMatrix, bias: UnsafePointer<Float>)] = []
      for i in 0..<(order - 1) {
        pws.append(
          (
            store.pack(
              try table.values(g + "pws.\(i).weight", shape: [dims[i + 1], dims[i]]), outputs: dims[i + 1],
              inputs: dims[i]),
            store.store(try table.values(g + "pws.\(i).bias", shape: [dims[i + 1]]))
          ))
      }
      let gamma = try table.values(p + "gamma1", shape: [c])
      let step = GnConvStep(
        dims: dims,
        projectP: store.pack(Array(projectIn.weight[..<split]), outputs: dims[0], inputs: c),
        projectPBias: store.store(Array(projectIn.bias[..<dims[0]])),
        projectQ: store.pack(Array(projectIn.weight[split...]), outputs: 2 * c - dims[0], inputs: c),
        projectQBias: store.store(Array(projectIn.bias[dims[0]...])),
        depthwiseWeight: store.store(
          Folding.scale(
            try table.values(g + "dwconv.weight", shape: [7, 7, gateWidth]), by: scaleVector, outputsLast: true)),
        depthwiseBias: store.store(
          Folding.scale(try table.values(g + "dwconv.bias", shape: [gateWidth]), by: scaleVector, outputsLast: true)),
        pws: pws,
        projectOut: store.pack(
          Folding.scale(try table.values(g + "proj_out.weight", shape: [c, c]), by: gamma, outputsLast: false),
          outputs: c, inputs: c),
        projectOutBias: store.store(
          Folding.scale(try table.values(g + "proj_out.bias", shape: [c]), by: gamma, outputsLast: false)))
      guard 2 * c - dims[0] == gateWidth else {
        throw InferenceError.invalidModel(reason: "\(g): gate widths \(dims) do not add up to \(2 * c - dims[0])")
      }
      return BlockStep(mixer: .gnConv(step), mlp: mlp)

    case .depthwise(let kernel):
      return BlockStep(
        mixer: .depthwise(
          kernel: kernel, weight: store.store(try table.values(p + "dwconv.weight", shape: [kernel, kernel, c])),
          bias: store.store(try table.values(p + "dwconv.bias", shape: [c]))),
        mlp: mlp)
    }
  }

  // MARK: Geometry and input checks

  /// The smallest height and width the model accepts (as the tape forward: stem stride · 2^(stages−1)).
  var minimumInputSize: Int { config.stemPatchSize << (config.depths.count - 1) }

  func checkInput(batch: Int, height: Int, width: Int, channels: Int) throws {
    let resolution = ModelConfig.Limits.resolution
    guard batch >= 1 else { throw InferenceError.invalidInput(reason: "batch size must be at least 1, got \(batch)") }
    guard channels == config.inputChannels else {
      throw InferenceError.invalidInput(
        reason: "images have \(channels) channel(s); \(config.name) takes \(config.inputChannels)")
    }
    for (name, size) in [("height", height), ("width", width)] {
      guard size >= minimumInputSize, size <= resolution.upperBound else {
        throw InferenceError.invalidInput(
          reason: "image \(name) \(size) is outside \(minimumInputSize)...\(resolution.upperBound) for \(config.name) "
            + "(stem \(config.stemPatchSize), \(config.depths.count - 1) downsamplings)")
      }
    }
  }

  /// Activation sizes per stage for input images of `height × width`.
  func geometry(height: Int, width: Int) -> [StageGeometry] {
    var h = stem.outputSize(height), w = stem.outputSize(width)
    var result: [StageGeometry] = []
    for (index, stage) in stages.enumerated() {
      if index > 0 {
        h /= 2
        w /= 2
      }
      result.append(StageGeometry(height: h, width: w, channels: stage.channels))
    }
    return result
  }

  /// Rows per chunk for a step whose widest per-row buffer has `width` floats.
  static func chunkRows(width: Int) -> Int {
    Swift.max(6, Swift.min(maximumChunkRows, chunkFloats / Swift.max(width, 1)))
  }

  /// The widest per-row chunk buffer any step uses (GEMM inputs and outputs of a chunk).
  var widestChunkRow: Int {
    var widest = Swift.max(stem.patchCount, config.mlpRatio * (config.widths.max() ?? 1))
    for (index, stage) in stages.enumerated() where index > 0 {
      widest = Swift.max(widest, 4 * config.widths[index - 1], stage.channels)
    }
    return widest
  }

  // MARK: Running

  func run(images: UnsafePointer<Float>, output: UnsafeMutablePointer<Float>, workspace ws: InferenceWorkspace) {
    let geometry = ws.geometry
    let batch = ws.key.batch
    var x = ws.activation, other = ws.otherActivation
    runStem(images: images, output: x, geometry: geometry[0], ws: ws)
    for (index, stage) in stages.enumerated() {
      let g = geometry[index]
      if let downsample = stage.downsample {
        runDownsample(downsample, input: x, previous: geometry[index - 1], output: other, geometry: g, ws: ws)
        swap(&x, &other)
      }
      for block in stage.blocks {
        runBlock(block, x: x, rows: batch * g.pixels, geometry: g, ws: ws)
      }
    }
    runHead(x: x, pixels: geometry[geometry.count - 1].pixels, output: output, ws: ws)
  }

  /// Calls `body(rows, slot, splitInside)` over `0..<rows` in chunks of at most `chunkRows` rows.
  ///
  /// With enough rows for every thread, the chunks are spread over the threads (each with its own
  /// scratch slot, kernels serial inside); otherwise they run in order on slot 0 and each kernel
  /// splits its own work (`splitInside`), so batch-1 late stages still use all threads.
  func forEachRowChunk(
    rows: Int, chunkRows: Int, workspace ws: InferenceWorkspace,
    _ body: (Range<Int>, InferenceWorkspace.Slot, Bool) -> Void
  ) {
    let threads = ws.slots.count
    var chunks = (rows + chunkRows - 1) / chunkRows
    // Below ~64 rows per thread, splitting each GEMM by columns repacks less than splitting the rows.
    if threads > 1 && rows >= threads * 64 {
      chunks = (chunks + threads - 1) / threads * threads  // equal chunk counts per thread
      Parallel.forEach(threads) { worker in
        for chunk in (chunks * worker / threads)..<(chunks * (worker + 1) / threads) {
          let range = (rows * chunk / chunks)..<(rows * (chunk + 1) / chunks)
          if !range.isEmpty { body(range, ws.slots[worker], false) }
        }
      }
    } else {
      for chunk in 0..<chunks {
        body((rows * chunk / chunks)..<(rows * (chunk + 1) / chunks), ws.slots[0], threads > 1)
      }
    }
  }

  /// Runs `body` on sub-ranges covering `rows`, split over the threads when `split` and the rows hold
  /// enough elements to pay for a dispatch.
  @inline(__always)
  func rowPass(_ rows: Range<Int>, columns: Int, split: Bool, _ body: (Range<Int>) -> Void) {
    guard split, rows.count * columns >= 16_384 else {
      body(rows)
      return
    }
    let start = rows.lowerBound
    Parallel.forRanges(rows.count, minimumChunk: Swift.max(1, 8192 / Swift.max(columns, 1))) { part in
      body((start + part.lowerBound)..<(start + part.upperBound))
    }
  }

  /// Calls `body(row, tap, image, ih, iw)` for every tap `kh · kernel + kw` of every output pixel `row` in
  /// `rows` of a convolution with output geometry `g`; `(ih, iw)` is the input pixel (maybe in the padding).
  @inline(__always)
  func forEachTap(
    _ rows: Range<Int>, geometry g: StageGeometry, kernel: Int, stride: Int, padding: Int,
    _ body: (Int, Int, Int, Int, Int) -> Void
  ) {
    for row in rows {
      let image = row / g.pixels, pixel = row % g.pixels
      let oh = pixel / g.width, ow = pixel % g.width
      for kh in 0..<kernel {
        for kw in 0..<kernel {
          body(row, kh * kernel + kw, image, oh * stride + kh - padding, ow * stride + kw - padding)
        }
      }
    }
  }

  func runStem(
    images: UnsafePointer<Float>, output x: UnsafeMutablePointer<Float>, geometry g: StageGeometry,
    ws: InferenceWorkspace
  ) {
    let s = stem
    let inputHeight = ws.key.height, inputWidth = ws.key.width
    let cin = s.inputChannels, c = s.outputChannels, patch = s.patchCount
    forEachRowChunk(
      rows: ws.key.batch * g.pixels, chunkRows: Self.chunkRows(width: Swift.max(patch, c)), workspace: ws
    ) { rows, slot, split in
      let cols = slot.wide
      rowPass(rows, columns: patch, split: split) { part in
        forEachTap(part, geometry: g, kernel: s.kernel, stride: s.stride, padding: s.padding) { row, tap, image, ih, iw in
          let target = cols + (row - rows.lowerBound) * patch + tap * cin
          if ih >= 0 && ih < inputHeight && iw >= 0 && iw < inputWidth {
            target.update(from: images + ((image * inputHeight + ih) * inputWidth + iw) * cin, count: cin)
          } else {
            target.update(repeating: 0, count: cin)
          }
        }
      }
      let out = x + rows.lowerBound * c
      GEMM.multiply(
        m: rows.count, a: cols, lda: patch, packedB: s.weight, c: out, ldc: c, columnBias: s.bias, parallel: split)
      rowPass(rows, columns: c, split: split) { part in
        InferenceKernels.layerNorm(
          x, rows: part, columns: c, epsilon: epsilon, weight: s.normWeight, bias: s.normBias,
          output: x + part.lowerBound * c)
      }
    }
  }

  func runDownsample(
    _ d: DownsampleStep, input: UnsafePointer<Float>, previous p: StageGeometry, output: UnsafeMutablePointer<Float>,
    geometry g: StageGeometry, ws: InferenceWorkspace
  ) {
    let cp = d.inputChannels, c = d.outputChannels, patch = 4 * cp
    forEachRowChunk(
      rows: ws.key.batch * g.pixels, chunkRows: Self.chunkRows(width: patch), workspace: ws
    ) { rows, slot, split in
      let cols = slot.wide
      // LN of each input pixel written straight into its place in the 2×2 patch row.
      rowPass(rows, columns: patch, split: split) { part in
        forEachTap(part, geometry: g, kernel: 2, stride: 2, padding: 0) { row, tap, image, ih, iw in
          InferenceKernels.normalizeRow(
            input + ((image * p.height + ih) * p.width + iw) * cp, into: cols + (row - rows.lowerBound) * patch + tap * cp,
            columns: cp, epsilon: epsilon, weight: nil, bias: nil)
        }
      }
      GEMM.multiply(
        m: rows.count, a: cols, lda: patch, packedB: d.weight, c: output + rows.lowerBound * c, ldc: c,
        columnBias: d.bias, parallel: split)
    }
  }

  func runBlock(_ block: BlockStep, x: UnsafeMutablePointer<Float>, rows: Int, geometry g: StageGeometry, ws: InferenceWorkspace) {
    let c = g.channels, batch = ws.key.batch
    let mixed = ws.mixer
    switch block.mixer {
    case .quadratic(let kernel, let normWeight, let normBias, let weights, let biases):
      let normalized = ws.normalized
      rowPass(0..<rows, columns: c, split: true) { part in
        InferenceKernels.layerNorm(
          x, rows: part, columns: c, epsilon: epsilon, weight: normWeight, bias: normBias,
          output: normalized + part.lowerBound * c)
      }
      QuadraticDepthwiseConvolution.forward(
        input: normalized, weights: weights, biases: biases, output: mixed, batch: batch, height: g.height,
        width: g.width, channels: c, kernelSize: kernel)
      runMLP(block.mlp, x: x, input: x, addend: mixed, rows: rows, ws: ws)
    case .depthwise(let kernel, let weight, let bias):
      DepthwiseConvolution.forward(
        input: x, weight: weight, bias: bias, output: mixed, batch: batch, height: g.height, width: g.width,
        channels: c, kernelSize: kernel)
      runMLP(block.mlp, x: x, input: mixed, addend: nil, rows: rows, ws: ws)
    case .gnConv(let step):
      runGnConv(step, x: x, rows: rows, geometry: g, ws: ws)
      runMLP(block.mlp, x: x, input: x, addend: nil, rows: rows, ws: ws)
    }
  }

  /// `x += project(GELU(expand(x̂)))` with `x̂` the LN of `input` (after `x += addend` when given).
  func runMLP(
    _ mlp: MLPStep, x: UnsafeMutablePointer<Float>, input: UnsafeMutablePointer<Float>,
    addend: UnsafePointer<Float>?, rows: Int, ws: InferenceWorkspace
  ) {
    let c = mlp.channels, hidden = mlp.hidden
    forEachRowChunk(rows: rows, chunkRows: Self.chunkRows(width: hidden), workspace: ws) { rows, slot, split in
      let normalized = slot.narrow, activation = slot.wide
      rowPass(rows, columns: c, split: split) { part in
        if let addend { InferenceKernels.add(addend, to: x, rows: part, columns: c) }
        InferenceKernels.layerNorm(
          input, rows: part, columns: c, epsilon: epsilon, weight: nil, bias: nil,
          output: normalized + (part.lowerBound - rows.lowerBound) * c)
      }
      GEMM.multiply(
        m: rows.count, a: normalized, lda: c, packedB: mlp.expand, c: activation, ldc: hidden,
        columnBias: mlp.expandBias, parallel: split)
      rowPass(0..<rows.count, columns: hidden, split: split) { part in
        InferenceKernels.gelu(activation + part.lowerBound * hidden, count: part.count * hidden)
      }
      GEMM.multiply(
        m: rows.count, a: activation, lda: hidden, packedB: mlp.project, c: x + rows.lowerBound * c, ldc: c, beta: 1,
        columnBias: mlp.projectBias, parallel: split)
    }
  }

  /// `x += γ₁ ⊙ gⁿConv(LN₁(x))`, with LN₁'s affine part in `proj_in`, s in the depthwise weights and
  /// γ₁ in `proj_out`: `proj_in` chunk by chunk, the 7×7 depthwise over the whole gate image, then the
  /// gating recursion and `proj_out` chunk by chunk (accumulating into `x`).
  func runGnConv(_ step: GnConvStep, x: UnsafeMutablePointer<Float>, rows: Int, geometry g: StageGeometry, ws: InferenceWorkspace) {
    let c = g.channels, d0 = step.dims[0], gates = step.gateWidth
    let p = ws.mixer, q = p + rows * d0, gated = q + rows * gates
    forEachRowChunk(rows: rows, chunkRows: Self.chunkRows(width: 2 * c), workspace: ws) { rows, slot, split in
      let normalized = slot.narrow
      rowPass(rows, columns: c, split: split) { part in
        InferenceKernels.layerNorm(
          x, rows: part, columns: c, epsilon: epsilon, weight: nil, bias: nil,
          output: normalized + (part.lowerBound - rows.lowerBound) * c)
      }
      GEMM.multiply(
        m: rows.count, a: normalized, lda: c, packedB: step.projectP, c: p + rows.lowerBound * d0, ldc: d0,
        columnBias: step.projectPBias, parallel: split)
      GEMM.multiply(
        m: rows.count, a: normalized, lda: c, packedB: step.projectQ, c: q + rows.lowerBound * gates, ldc: gates,
        columnBias: step.projectQBias, parallel: split)
    }
    DepthwiseConvolution.forward(
      input: q, weight: step.depthwiseWeight, bias: step.depthwiseBias, output: gated, batch: ws.key.batch,
      height: g.height, width: g.width, channels: gates, kernelSize: 7)
    forEachRowChunk(rows: rows, chunkRows: Self.chunkRows(width: c), workspace: ws) { rows, slot, split in
      var current = slot.narrow, spare = slot.wide
      let count = rows.count
      let firstGate = gated + rows.lowerBound * gates
      rowPass(0..<count, columns: d0, split: split) { part in
        InferenceKernels.multiply(
          p + rows.lowerBound * d0, lda: d0, firstGate, ldb: gates, into: current, ldc: d0, rows: part, columns: d0)
      }
      for (i, projection) in step.pws.enumerated() {
        let width = step.dims[i + 1]
        GEMM.multiply(
          m: count, a: current, lda: step.dims[i], packedB: projection.weight, c: spare, ldc: width,
          columnBias: projection.bias, parallel: split)
        let gate = firstGate + step.gateOffset(i + 1)
        rowPass(0..<count, columns: width, split: split) { part in
          InferenceKernels.multiply(spare, lda: width, gate, ldb: gates, into: spare, ldc: width, rows: part, columns: width)
        }
        swap(&current, &spare)
      }
      GEMM.multiply(
        m: count, a: current, lda: c, packedB: step.projectOut, c: x + rows.lowerBound * c, ldc: c, beta: 1,
        columnBias: step.projectOutBias, parallel: split)
    }
  }

  /// Mean over each image's pixels, LN (affine in the head), head GEMM into `output`.
  func runHead(x: UnsafePointer<Float>, pixels: Int, output: UnsafeMutablePointer<Float>, ws: InferenceWorkspace) {
    let c = head.channels, batch = ws.key.batch
    let pooled = ws.normalized
    let scale = 1 / Float(pixels)
    Parallel.forRanges(batch, minimumChunk: Swift.max(1, 16_384 / Swift.max(pixels * c, 1))) { images in
      for image in images {
        let row = pooled + image * c
        row.update(repeating: 0, count: c)
        for pixel in 0..<pixels {
          InferenceKernels.add(x + (image * pixels + pixel) * c, to: row, rows: 0..<1, columns: c)
        }
        for j in 0..<c { row[j] *= scale }
        InferenceKernels.normalizeRow(row, into: row, columns: c, epsilon: epsilon, weight: nil, bias: nil)
      }
    }
    GEMM.multiply(m: batch, a: pooled, lda: c, packedB: head.weight, c: output, ldc: head.classes, columnBias: head.bias)
  }
}

// MARK: Workspace

/// The buffers of one (batch, height, width, threads), allocated once and reused by every call with them.
final class InferenceWorkspace {
  struct Key: Equatable {
    let batch: Int, height: Int, width: Int, threads: Int
  }

  /// A thread's chunk scratch: `narrow` holds a chunk of C-wide rows, `wide` the widest rows of a chunk.
  struct Slot {
    let narrow: UnsafeMutablePointer<Float>
    let wide: UnsafeMutablePointer<Float>
  }

  let key: Key
  let geometry: [StageGeometry]
  let storage: TensorBuffer
  let activation: UnsafeMutablePointer<Float>
  let otherActivation: UnsafeMutablePointer<Float>
  /// LN output before the quadratic mixer; pooled features at the end.
  let normalized: UnsafeMutablePointer<Float>
  /// Mixer output (gⁿConv: p₀, q and the gates).
  let mixer: UnsafeMutablePointer<Float>
  let slots: [Slot]
  var byteCount: Int { storage.byteCount }

  init(plan: InferencePlan, key: Key) throws {
    self.key = key
    geometry = plan.geometry(height: key.height, width: key.width)
    // Sizes in saturating arithmetic (Int.max on overflow), so an absurd batch fails the budget check
    // below instead of trapping.
    func product(_ factors: Int...) -> Int {
      factors.reduce(1) { partial, factor in
        let (result, overflow) = partial.multipliedReportingOverflow(by: factor)
        return overflow ? Int.max : result
      }
    }
    func sum(_ terms: Int...) -> Int {
      terms.reduce(0) { partial, term in
        let (result, overflow) = partial.addingReportingOverflow(term)
        return overflow ? Int.max : result
      }
    }
    var activationCount = 0
    var mixerCount = 0
    for (index, g) in geometry.enumerated() {
      activationCount = max(activationCount, product(key.batch, g.pixels, g.channels))
      let mixerWidth: Int
      switch plan.config.mixers[index] {
      case .gnConv(let order, _):
        let dims = (0..<order).map { g.channels >> $0 }
        mixerWidth = (dims.last ?? 0) + 2 * dims.reduce(0, +)
      case .quadratic, .depthwise: mixerWidth = g.channels
      }
      mixerCount = max(mixerCount, product(key.batch, g.pixels, mixerWidth))
    }
    let chunk = InferencePlan.maximumChunkRows
    let narrowCount = chunk * (plan.config.widths.max() ?? 1)
    let wideCount = chunk * plan.widestChunkRow
    let slotCount = key.threads
    let total = sum(product(activationCount, 3), mixerCount, product(slotCount, narrowCount + wideCount))
    try MemoryBudget.check(
      product(total, MemoryLayout<Float>.stride),
      for: "the inference workspace of \(plan.config.name) for \(key.batch) image(s) of \(key.height)×\(key.width)")
    storage = TensorBuffer(count: total)
    var next = storage.pointer
    func take(_ count: Int) -> UnsafeMutablePointer<Float> {
      defer { next += count }
      return next
    }
    activation = take(activationCount)
    otherActivation = take(activationCount)
    normalized = take(activationCount)
    mixer = take(mixerCount)
    slots = (0..<slotCount).map { _ in Slot(narrow: take(narrowCount), wide: take(wideCount)) }
  }
}
