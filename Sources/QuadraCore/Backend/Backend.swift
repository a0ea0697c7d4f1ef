// The compute seam: every tensor op validates its shapes in `Ops/` and then calls one primitive
// of the selected backend. Primitives write into outputs the op allocated (through the same
// backend, on the tensors' device), so a backend never decides shapes; it only computes.

/// The shape of a (batched) matrix product `C = op(A) · op(B)`, `op(X) = X` or `Xᵀ`.
///
/// `A` holds `batch` row-major matrices of `m × k` (`k × m` when transposed), `B` holds `batch`
/// matrices of `k × n` (`n × k` when transposed) and `C` receives `batch` matrices of `m × n`.
public struct MatrixProduct: Sendable, Equatable {
  public var batch: Int
  public var m: Int
  public var n: Int
  public var k: Int
  public var transposeA: Bool
  public var transposeB: Bool

  public init(batch: Int = 1, m: Int, n: Int, k: Int, transposeA: Bool = false, transposeB: Bool = false) {
    self.batch = batch
    self.m = m
    self.n = n
    self.k = k
    self.transposeA = transposeA
    self.transposeB = transposeB
  }

  /// Multiply-adds performed: `batch · m · n · k`.
  public var multiplyAdds: Int { batch * m * n * k }
}

/// The operator of ``Backend/binary(_:_:_:into:)``.
public enum BinaryOperator: String, Sendable, CaseIterable {
  /// `a + b`
  case add
  /// `a − b`
  case subtract
  /// `a ⊙ b`
  case multiply
  /// `b` (broadcast to the output shape; `a` only gives the shape and is not read).
  case second
}

/// A rectangle of `rows × width` elements inside a tensor's storage: row `r` starts at
/// `offset + r · rowStride`. Concatenation, splitting and slice writes are copies between two of them.
public struct StridedBlock: Sendable, Equatable {
  public var offset: Int
  public var rowStride: Int

  public init(offset: Int, rowStride: Int) {
    self.offset = offset
    self.rowStride = rowStride
  }
}

/// How one image of a batch is cut from its source: output pixel `(y, x)` reads source pixel
/// `(y + dy, x′ + dx)` with `x′ = W − 1 − x` when `flip`, else `x`; outside the image it is the fill value.
/// (A random crop with padding p is a shift `(dy, dx) ∈ [−p, p]²`; the flip mirrors left–right.)
public struct ImageTransform: Sendable, Equatable, Codable {
  public var dy: Int
  public var dx: Int
  public var flip: Bool

  public init(dy: Int = 0, dx: Int = 0, flip: Bool = false) {
    self.dy = dy
    self.dx = dx
    self.flip = flip
  }

  /// Copies the image unchanged.
  public static let identity = ImageTransform()
}

/// The parameters of a MetaFormer block's channel MLP with its LayerNorm and layer scale (see
/// ``Backend/residualMLP(_:parameters:epsilon:into:saved:)``), or their gradients (same shapes).
///
/// For `C` channels and hidden width `H`: `normWeight`, `normBias` `[C]`; `expandWeight` `[H, C]`,
/// `expandBias` `[H]`; `projectWeight` `[C, H]`, `projectBias` `[C]`; `scale` (γ) `[C]`.
/// The weights are in PyTorch's `nn.Linear` layout (`[out, in]`).
public struct ResidualMLPParameters: Sendable {
  public var normWeight: Tensor
  public var normBias: Tensor
  public var expandWeight: Tensor
  public var expandBias: Tensor
  public var projectWeight: Tensor
  public var projectBias: Tensor
  public var scale: Tensor

  public init(
    normWeight: Tensor, normBias: Tensor, expandWeight: Tensor, expandBias: Tensor, projectWeight: Tensor,
    projectBias: Tensor, scale: Tensor
  ) {
    self.normWeight = normWeight
    self.normBias = normBias
    self.expandWeight = expandWeight
    self.expandBias = expandBias
    self.projectWeight = projectWeight
    self.projectBias = projectBias
    self.scale = scale
  }

  /// In the order of ``Backend`` op tests and autograd inputs.
  public var all: [Tensor] { [normWeight, normBias, expandWeight, expandBias, projectWeight, projectBias, scale] }

  /// From ``all``'s order.
  public init(_ tensors: [Tensor]) {
    precondition(tensors.count == 7, "ResidualMLPParameters: 7 tensors, got \(tensors.count)")
    self.init(
      normWeight: tensors[0], normBias: tensors[1], expandWeight: tensors[2], expandBias: tensors[3],
      projectWeight: tensors[4], projectBias: tensors[5], scale: tensors[6])
  }
}

/// What the backward pass of ``Backend/residualMLP(_:parameters:epsilon:into:saved:)`` needs besides
/// the input and the parameters: the hidden pre-activation `h` `[rows, H]`, the MLP's output `o`
/// `[rows, C]` (before γ), and LayerNorm's per-row mean and σ⁻¹ `[rows]`. The normalized input and
/// `GELU(h)` are recomputed from them.
public struct ResidualMLPSaved: Sendable {
  public var hidden: Tensor
  public var mlpOutput: Tensor
  public var mean: Tensor
  public var inverseStandardDeviation: Tensor

  public init(hidden: Tensor, mlpOutput: Tensor, mean: Tensor, inverseStandardDeviation: Tensor) {
    self.hidden = hidden
    self.mlpOutput = mlpOutput
    self.mean = mean
    self.inverseStandardDeviation = inverseStandardDeviation
  }
}

/// Three tensors, one per factor `(a, b, c)` of a quadratic neuron.
public typealias TensorTriple = (Tensor, Tensor, Tensor)

/// A LayerNorm over the last axis that an op applies to its input, `x̂ = (x − μ)/√(σ² + ε) ⊙ γ + β`:
/// γ and β (`[C]` each) and ε.
public struct LayerNormParameters: Sendable {
  public var weight: Tensor
  public var bias: Tensor
  public var epsilon: Float

  public init(weight: Tensor, bias: Tensor, epsilon: Float) {
    self.weight = weight
    self.bias = bias
    self.epsilon = epsilon
  }
}

/// Everything a device must provide so that every tensor op runs on it.
///
/// The primitives are the small set the ops in `QuadraCore/Ops` are built from (tinygrad's
/// spirit), except that the hot fused kernels stay fused (bias + GELU, the quadratic depthwise
/// convolution, LayerNorm, softmax cross-entropy). Contracts shared by all primitives:
///
/// - Every tensor argument is on ``device`` (ops check this) and contiguous row-major.
/// - Shapes were validated by the op; a primitive may assume them.
/// - Outputs (`into:`, `…Gradient:` arguments) are freshly allocated by the op through
///   ``makeBuffer(count:)``; the primitive overwrites every element (none is read), except
///   where noted (``binary(_:_:_:into:)`` may write into its first operand).
/// - Gradients follow the formulas documented on the tensor-level op of the same name.
public protocol Backend: Sendable {
  /// A short name for reports and the `--backend` flag (`cpu`, `reference`).
  var name: String { get }
  /// Where this backend's buffers live.
  var device: Device { get }

  // MARK: Memory

  /// Uninitialized storage for `count` floats on ``device``.
  func makeBuffer(count: Int) -> TensorBuffer
  /// Copies `source` from host memory into `destination` starting at element `offset`.
  func copy(fromHost source: UnsafeBufferPointer<Float>, into destination: Tensor, at offset: Int)
  /// Copies `destination.count` elements of `source`, starting at element `offset`, to host memory.
  func copy(_ source: Tensor, from offset: Int, toHost destination: UnsafeMutableBufferPointer<Float>)
  /// Sets every element to `value`.
  func fill(_ tensor: Tensor, with value: Float)
  /// Copies `rows × width` elements between two strided blocks (device to device; the blocks
  /// may belong to the same tensor only if they do not overlap).
  func copyBlock(
    from source: Tensor, _ sourceBlock: StridedBlock, into destination: Tensor, _ destinationBlock: StridedBlock,
    rows: Int, width: Int)
  /// Assembles a batch: image `b` of `output` (`[B, H, W, C]`) is image `indices[b]` of `source`
  /// (`[N, H, W, C]`), moved by `transforms[b]` (nil: all ``ImageTransform/identity``), `fill` outside.
  /// Indices must be in `0..<N` (the caller checks).
  func gatherImages(from source: Tensor, indices: [Int], transforms: [ImageTransform]?, fill: Float, into output: Tensor)

  // MARK: Linear algebra

  /// `c = op(a) · op(b)` (+ `columnBias[j]` on column `j` when given; only for `batch == 1`).
  func matrixMultiply(_ a: Tensor, _ b: Tensor, _ product: MatrixProduct, columnBias: Tensor?, into c: Tensor)

  // MARK: Elementwise and reductions

  /// `output = a ∘ b` with NumPy broadcasting of `a.shape` and `b.shape` to `output.shape`.
  /// `output` may be `a` itself (in-place update) when `a` has the output shape.
  func binary(_ op: BinaryOperator, _ a: Tensor, _ b: Tensor, into output: Tensor)
  /// Sums `x` over the axes where `keep` is false (`keep.count == x.rank`); `output` holds the kept axes in order.
  func sum(_ x: Tensor, keeping keep: [Bool], into output: Tensor)
  /// `output[j] = Σ_r a[r, j] · b[r, j]` over all rows of `a`, `b` (same shape, last axis `output.count`).
  func sumOfProducts(_ a: Tensor, _ b: Tensor, into output: Tensor)
  /// `Σ x`, accumulated in Double.
  func sumAll(_ x: Tensor) -> Double
  /// `Σ x²`, accumulated in Double.
  func squaredSum(_ x: Tensor) -> Double
  /// `max |x|` (0 for an empty tensor).
  func maxAbs(_ x: Tensor) -> Float
  /// Per row of the last axis, the index of the first largest element.
  func argmaxRows(_ x: Tensor) -> [Int]

  // MARK: Activations, normalization, loss

  /// `output = GELU(x + bias)` with `bias` `[C]` along the last axis, or `GELU(x)` when nil.
  func gelu(_ x: Tensor, bias: Tensor?, into output: Tensor)
  /// `inputGradient = g · GELU′(x + bias)`; `biasGradient = Σ_rows inputGradient` when given.
  func geluBackward(
    _ x: Tensor, bias: Tensor?, outputGradient: Tensor, inputGradient: Tensor, biasGradient: Tensor?)
  /// The residual MLP's backward pass through its GELU (no bias; `x` is `[rows, C]`, C = `biasGradient.count`):
  /// `activated = GELU(x)`, `gradient ← gradient ⊙ GELU′(x)` in place, `biasGradient = Σ_rows gradient` (the
  /// updated one). Default: ``gelu(_:bias:into:)`` then ``geluBackward(_:bias:outputGradient:inputGradient:biasGradient:)``
  /// in place; a backend may do it in one pass over `x`.
  func geluBackwardWithActivation(_ x: Tensor, gradient: Tensor, activated: Tensor, biasGradient: Tensor)
  /// Softmax over the last axis.
  func softmax(_ x: Tensor, into output: Tensor)
  /// Writes the softmax of `logits` `[B, K]` to `probabilities` and returns the mean smoothed cross-entropy.
  func softmaxCrossEntropy(_ logits: Tensor, labels: [Int], labelSmoothing: Float, probabilities: Tensor) -> Double
  /// `gradient = (probabilities − q) · scale` with `q` the smoothed one-hot targets.
  func softmaxCrossEntropyBackward(
    probabilities: Tensor, labels: [Int], labelSmoothing: Float, scale: Float, into gradient: Tensor)
  /// LayerNorm over the last axis; also writes each row's mean and 1/√(var + ε) (`[rows]`).
  func layerNorm(
    _ x: Tensor, weight: Tensor, bias: Tensor, epsilon: Float, into output: Tensor, mean: Tensor,
    inverseStandardDeviation: Tensor)
  /// Gradients of ``layerNorm(_:weight:bias:epsilon:into:mean:inverseStandardDeviation:)``; `inputGradient`
  /// gets ∂L/∂x plus `inputGradientAddend` when given (the gradient `x` already has from its other uses, such
  /// as a block's residual path, added as each row is written instead of in a separate pass).
  func layerNormBackward(
    _ x: Tensor, outputGradient: Tensor, weight: Tensor, mean: Tensor, inverseStandardDeviation: Tensor,
    inputGradient: Tensor, inputGradientAddend: Tensor?, weightGradient: Tensor, biasGradient: Tensor)

  /// A MetaFormer block's second half, fused: with `x̂ = LN(x)` (over the last axis, `C` channels),
  ///
  ///     h = x̂·W₁ᵀ + b₁,   o = GELU(h)·W₂ᵀ + b₂,   y = x + γ ⊙ o
  ///
  /// writes `y` to `output` and `h`, `o`, LayerNorm's mean and σ⁻¹ to `saved`.
  func residualMLP(
    _ x: Tensor, parameters: ResidualMLPParameters, epsilon: Float, into output: Tensor, saved: ResidualMLPSaved)
  /// Its gradients: `inputGradient` (∂L/∂x, through both the residual and the MLP) and every
  /// parameter's in `gradients`.
  func residualMLPBackward(
    _ x: Tensor, parameters: ResidualMLPParameters, epsilon: Float, saved: ResidualMLPSaved, outputGradient: Tensor,
    inputGradient: Tensor, gradients: ResidualMLPParameters)

  /// A residual branch joining its trunk through a layer scale, `y = x + γ ⊙ m` (`γ` `[C]` along the last
  /// axis of `x` and `m`, which have one shape): one pass where a product and a sum would take two.
  func layerScaleResidual(_ x: Tensor, branch m: Tensor, scale: Tensor, into output: Tensor)
  /// Its gradients but ∂L/∂x (which is ∂L/∂y itself): `branchGradient = γ ⊙ ∂L/∂y` and
  /// `scaleGradient[j] = Σ_rows ∂L/∂y[r, j] · m[r, j]`, in one pass.
  func layerScaleResidualBackward(
    branch m: Tensor, scale: Tensor, outputGradient: Tensor, branchGradient: Tensor, scaleGradient: Tensor)

  // MARK: Convolutions

  /// Depthwise "same" convolution, stride 1: input `[N, H, W, C]`, weight `[k, k, C]`, bias `[C]`.
  func depthwiseConvolution(_ x: Tensor, weight: Tensor, bias: Tensor?, into output: Tensor)
  /// Its gradients; `inputGradient` and `biasGradient` are skipped when nil.
  func depthwiseConvolutionBackward(
    _ x: Tensor, weight: Tensor, outputGradient: Tensor, inputGradient: Tensor?, weightGradient: Tensor,
    biasGradient: Tensor?)
  /// `(W_a ∗ x + b_a) ⊙ (W_b ∗ x + b_b) + (W_c ∗ x + b_c)`, depthwise, in one fused pass.
  func quadraticDepthwiseConvolution(
    _ x: Tensor, weights: TensorTriple, biases: TensorTriple?, into output: Tensor)
  /// Its gradients from `x` alone (a and b recomputed).
  func quadraticDepthwiseConvolutionBackward(
    _ x: Tensor, weights: TensorTriple, biases: TensorTriple?, outputGradient: Tensor, inputGradient: Tensor?,
    weightGradients: TensorTriple, biasGradients: TensorTriple?)
  /// ``quadraticDepthwiseConvolution(_:weights:biases:into:)`` of `LN(x)` (a QuadraBlock's `Mixer(LN₁(x))`),
  /// the LayerNorm applied as `x` is read; `statistics` receives each pixel's μ and σ⁻¹ (`[N·H·W]`).
  func normalizedQuadraticDepthwiseConvolution(
    _ x: Tensor, normalization: LayerNormParameters, weights: TensorTriple, biases: TensorTriple?, into output: Tensor,
    statistics: LayerNormStatistics)
  /// Its gradients through the convolution and the LayerNorm, from `x` and the forward's `statistics`:
  /// `inputGradient` is ∂L/∂x plus `inputGradientAddend` when given (the gradient `x` already received
  /// from its other uses, a block's residual path: added as each row is written, instead of a separate
  /// sum pass), `normalizationGradients` are ∂L/∂γ and ∂L/∂β.
  func normalizedQuadraticDepthwiseConvolutionBackward(
    _ x: Tensor, normalization: LayerNormParameters, statistics: LayerNormStatistics, weights: TensorTriple,
    biases: TensorTriple?, outputGradient: Tensor, inputGradient: Tensor, inputGradientAddend: Tensor?,
    normalizationGradients: (weight: Tensor, bias: Tensor), weightGradients: TensorTriple, biasGradients: TensorTriple?)
  /// Dense convolution, weight `[O, kh, kw, I]`.
  func convolution2D(_ x: Tensor, weight: Tensor, bias: Tensor?, geometry: Convolution2D.Geometry, into output: Tensor)
  /// Its gradients; `inputGradient` and `biasGradient` are skipped when nil.
  func convolution2DBackward(
    _ x: Tensor, weight: Tensor, outputGradient: Tensor, geometry: Convolution2D.Geometry, inputGradient: Tensor?,
    weightGradient: Tensor, biasGradient: Tensor?)
  /// `y[r, j] = z[r, j] · z[r, F + j] + z[r, 2F + j]` for `z` `[rows, 3F]`, `y` `[rows, F]`.
  func quadraticCombination(_ z: Tensor, into output: Tensor)
  /// Overwrites `z = [a | b | c]` (`[rows, 3F]`) with `[g ⊙ b | g ⊙ a | g]` for `g` `[rows, F]`.
  func quadraticGradients(overwriting z: Tensor, outputGradient: Tensor)

  // MARK: Layout

  /// `output` axis `i` is `x` axis `axes[i]`.
  func permute(_ x: Tensor, axes: [Int], into output: Tensor)

  // MARK: Parameter updates (in place; the Ops layer makes the written storage unique first)

  /// AdamW on every element: `m ← β₁m + (1−β₁)g`, `v ← β₂v + (1−β₂)g²`,
  /// `θ ← θ·parameterScale − stepSize·m / (√v·inverseRootSecondCorrection + ε)`, in this
  /// order of operations and without fused multiply-adds (resumed runs are bit-exact).
  func adamWStep(_ step: AdamWStep, parameter: Tensor, gradient: Tensor, firstMoment: Tensor, secondMoment: Tensor)
  /// ``adamWStep(_:parameter:gradient:firstMoment:secondMoment:)`` on several parameters in one call (a
  /// multi-tensor step: a backend may spread the elements of all of them over its threads together). The
  /// same bits as one call per update, in any order. Default: one call per update.
  func adamWSteps(_ updates: [AdamWUpdate])
  /// SGD as `torch.optim.SGD` with dampening 0: `d = g + λθ`; with a momentum buffer `b ← μb + d`
  /// and `d = b` (Nesterov: `d + μb`); then `θ ← θ − lr·d`.
  func sgdStep(_ step: SGDStep, parameter: Tensor, gradient: Tensor, momentumBuffer: Tensor?)
  /// `x ← α·x + β·y` in place (exponential moving averages, gradient scaling).
  func linearCombination(_ x: Tensor, scaledBy alpha: Float, adding y: Tensor, scaledBy beta: Float)
}

/// One parameter's part of a multi-tensor AdamW step (``Backend/adamWSteps(_:)``, ``Tensor/adamWSteps(_:)``).
public struct AdamWUpdate {
  public var step: AdamWStep
  /// θ, m and v are updated in place, in the storage these tensors share with their owners.
  public var parameter: Tensor
  public var gradient: Tensor
  public var firstMoment: Tensor
  public var secondMoment: Tensor

  public init(step: AdamWStep, parameter: Tensor, gradient: Tensor, firstMoment: Tensor, secondMoment: Tensor) {
    self.step = step
    self.parameter = parameter
    self.gradient = gradient
    self.firstMoment = firstMoment
    self.secondMoment = secondMoment
  }

  var tensors: [Tensor] { [parameter, gradient, firstMoment, secondMoment] }
}

extension Backend {
  public func adamWSteps(_ updates: [AdamWUpdate]) { adamWStepsInTurn(updates) }

  public func geluBackwardWithActivation(_ x: Tensor, gradient: Tensor, activated: Tensor, biasGradient: Tensor) {
    gelu(x, bias: nil, into: activated)
    geluBackward(x, bias: nil, outputGradient: gradient, inputGradient: gradient, biasGradient: biasGradient)
  }

  /// One ``adamWStep(_:parameter:gradient:firstMoment:secondMoment:)`` per update, in order.
  func adamWStepsInTurn(_ updates: [AdamWUpdate]) {
    for u in updates {
      adamWStep(u.step, parameter: u.parameter, gradient: u.gradient, firstMoment: u.firstMoment, secondMoment: u.secondMoment)
    }
  }
}

/// The per-step constants of an AdamW update (see ``Backend/adamWStep(_:parameter:gradient:firstMoment:secondMoment:)``).
public struct AdamWStep: Sendable, Equatable {
  public var beta1: Float
  public var beta2: Float
  public var epsilon: Float
  /// `lr / (1 − β₁ᵗ)`.
  public var stepSize: Float
  /// `1 / √(1 − β₂ᵗ)`.
  public var inverseRootSecondCorrection: Float
  /// `1 − lr·λ` (1 without weight decay).
  public var parameterScale: Float

  public init(
    beta1: Float, beta2: Float, epsilon: Float, stepSize: Float, inverseRootSecondCorrection: Float,
    parameterScale: Float
  ) {
    self.beta1 = beta1
    self.beta2 = beta2
    self.epsilon = epsilon
    self.stepSize = stepSize
    self.inverseRootSecondCorrection = inverseRootSecondCorrection
    self.parameterScale = parameterScale
  }
}

/// The constants of an SGD update (see ``Backend/sgdStep(_:parameter:gradient:momentumBuffer:)``).
public struct SGDStep: Sendable, Equatable {
  public var learningRate: Float
  public var momentum: Float
  /// λ of the coupled L2 penalty added to the gradient.
  public var weightDecay: Float
  public var nesterov: Bool

  public init(learningRate: Float, momentum: Float, weightDecay: Float, nesterov: Bool) {
    self.learningRate = learningRate
    self.momentum = momentum
    self.weightDecay = weightDecay
    self.nesterov = nesterov
  }
}

/// Backend selection: the task-local ``current`` backend for tensors on its device, and each
/// device kind's default backend otherwise.
///
/// ```swift
/// let y = Backends.withCurrent(ReferenceBackend()) { x.gelu() }  // computed by the reference
/// ```
public enum Backends {
  /// The backend ops use for tensors on its ``Backend/device``: the current ``ComputeContext``'s
  /// (``CPUBackend`` unless a caller chose another).
  public static var current: any Backend { ComputeContext.current.backend }

  /// Runs `body` with `backend` computing the ops (the current context with that backend).
  public static func withCurrent<R>(_ backend: any Backend, _ body: () throws -> R) rethrows -> R {
    try ComputeContext.current.with(backend: backend).run(body)
  }

  /// Every backend that `quadranet bench ops --backend` and the op tests can name.
  /// Adding a backend is one entry here.
  public static let all: [any Backend] = [CPUBackend(), ReferenceBackend()]

  /// The backend named `name` in ``all``, or nil.
  public static func named(_ name: String) -> (any Backend)? { all.first { $0.name == name } }

  /// The backend that serves `device` when ``current`` lives elsewhere.
  public static func defaultBackend(for device: Device) -> any Backend {
    switch device.kind {
    case .cpu: CPUBackend(device: device)
    }
  }

  /// The backend for tensors on `device`: ``current`` when it lives there, else the device's default.
  public static func backend(for device: Device) -> any Backend {
    let selected = current
    return selected.device == device ? selected : defaultBackend(for: device)
  }

  /// The backend for an op on `tensors`, which must all be on one device (checked; the message names `op`).
  public static func backend(op: @autoclosure () -> String, _ tensors: [Tensor]) -> any Backend {
    let device = tensors.first?.device ?? .cpu
    if tensors.contains(where: { $0.device != device }) {
      opPrecondition(
        false, "\(op()): operands are on different devices \(tensors.map(\.device.description)); move them first")
    }
    return backend(for: device)
  }

  /// The backend for an op on `tensors`, which must all be on one device (checked; the message names `op`).
  public static func backend(op: @autoclosure () -> String, _ tensors: Tensor...) -> any Backend {
    backend(op: op(), tensors)
  }
}
