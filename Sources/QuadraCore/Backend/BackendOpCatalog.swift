// The op cases every backend is checked against (tests) and timed on (`quadranet bench ops`),
// after ggml's `test-backend-ops`: one table, every op forward and backward, odd sizes and
// batches > 1, a per-op tolerance.

/// One op at one set of shapes: how to make its inputs, run it forward and backward, how close
/// a backend must come to the reference, and how much work it is (for GFLOP/s or GB/s).
public struct BackendOpCase: Sendable {
  /// The op family, as `--ops` selects it (`matmul`, `depthwiseConv2D`, …).
  public let op: String
  /// The shapes and options, e.g. `x[2,7,6,9] k5`.
  public let variant: String
  /// Largest allowed `|value − reference| / (1 + |reference|)` over all output elements.
  public let tolerance: Float
  /// Whether the reference's backward is also checked against central finite differences.
  public let checksFiniteDifferences: Bool
  /// Floating-point operations of one forward pass (0 when the op is memory-bound; then GB/s is reported).
  public let forwardFLOPs: Double
  /// Seeded inputs, on the host.
  public let makeInputs: @Sendable () -> [Tensor]
  /// How many leading inputs are differentiable (the backward pass returns one gradient each).
  public let differentiableInputCount: Int
  /// The forward pass on the current backend.
  public let forward: @Sendable ([Tensor]) -> [Tensor]
  /// The backward pass in two stages: given the inputs, whatever the pullback needs from a forward pass
  /// (LayerNorm's statistics, the residual MLP's saved activations) is computed, and a pullback is
  /// returned that maps output gradients to the differentiable inputs' gradients; nil without a backward
  /// pass. `bench ops` times the pullback alone, as a training step runs it.
  public let stagedBackward: (@Sendable (_ inputs: [Tensor]) -> @Sendable (_ outputGradients: [Tensor]) -> [Tensor])?

  /// Gradients of `Σ_j ⟨outputs[j], outputGradients[j]⟩` with respect to the differentiable inputs, or nil
  /// (both stages of ``stagedBackward``).
  public var backward: (@Sendable (_ inputs: [Tensor], _ outputGradients: [Tensor]) -> [Tensor])? {
    guard let staged = stagedBackward else { return nil }
    return { @Sendable inputs, outputGradients in staged(inputs)(outputGradients) }
  }

  /// `op variant`, the case's unique name.
  public var name: String { "\(op) \(variant)" }

  public init(
    op: String, variant: String, tolerance: Float, checksFiniteDifferences: Bool = false, forwardFLOPs: Double = 0,
    differentiableInputCount: Int, makeInputs: @escaping @Sendable () -> [Tensor],
    forward: @escaping @Sendable ([Tensor]) -> [Tensor],
    backward: (@Sendable ([Tensor], [Tensor]) -> [Tensor])? = nil,
    stagedBackward: (@Sendable ([Tensor]) -> @Sendable ([Tensor]) -> [Tensor])? = nil
  ) {
    precondition(backward == nil || stagedBackward == nil, "a case has one backward pass")
    self.op = op
    self.variant = variant
    self.tolerance = tolerance
    self.checksFiniteDifferences = checksFiniteDifferences
    self.forwardFLOPs = forwardFLOPs
    self.differentiableInputCount = differentiableInputCount
    self.makeInputs = makeInputs
    self.forward = forward
    if let backward {
      self.stagedBackward = { @Sendable inputs in { @Sendable outputGradients in backward(inputs, outputGradients) } }
    } else {
      self.stagedBackward = stagedBackward
    }
  }
}

/// The table of op cases.
public enum BackendOpCatalog {
  /// Shapes small enough for the reference backend and odd enough to hit every kernel tail (tests),
  /// or the sizes QuadraNet trains at (benchmarks).
  public enum Scale: String, Sendable, CaseIterable {
    case small, large
  }

  /// Every op family in ``cases(_:)``.
  public static var opNames: [String] {
    var seen: [String] = []
    for c in cases(.small) where !seen.contains(c.op) { seen.append(c.op) }
    return seen
  }

  /// Seeded uniform values in [−1, 1).
  static func random(_ shape: [Int], seed: UInt64, lower: Float = -1, upper: Float = 1) -> Tensor {
    var generator = RandomGenerator(seed: seed)
    return Tensor.uniform(shape: shape, lower: lower, upper: upper, using: &generator)
  }

  static func describe(_ shape: [Int]) -> String { "[\(shape.map(String.init).joined(separator: ","))]" }

  /// All cases at `scale`.
  public static func cases(_ scale: Scale) -> [BackendOpCase] {
    let large = scale == .large
    return matrixCases(large) + elementwiseCases(large) + activationCases(large) + normalizationCases(large)
      + residualMLPCases(large) + layerScaleResidualCases(large)
      + convolutionCases(large) + quadraticCases(large) + layoutCases(large) + parameterUpdateCases(large)
  }

  // MARK: Matrix products

  static func matrixCases(_ large: Bool) -> [BackendOpCase] {
    var result: [BackendOpCase] = []
    let products: [(batch: Int, m: Int, n: Int, k: Int, ta: Bool, tb: Bool)] =
      large
      ? [(1, 3136, 256, 64, false, false), (1, 196, 1536, 384, false, true), (32, 49, 49, 64, false, true)]
      : [(1, 13, 11, 17, false, false), (1, 9, 19, 7, true, false), (1, 10, 6, 21, false, true),
        (3, 5, 9, 6, true, true), (2, 1, 7, 3, false, false)]
    for p in products {
      let aShape = (p.batch > 1 ? [p.batch] : []) + (p.ta ? [p.k, p.m] : [p.m, p.k])
      let bShape = (p.batch > 1 ? [p.batch] : []) + (p.tb ? [p.n, p.k] : [p.k, p.n])
      let (ta, tb) = (p.ta, p.tb)
      result.append(
        BackendOpCase(
          op: "matmul",
          variant: "\(describe(aShape))\(ta ? "ᵀ" : "")·\(describe(bShape))\(tb ? "ᵀ" : "")",
          tolerance: 1e-5, checksFiniteDifferences: !large && p.batch > 1,
          forwardFLOPs: 2 * Double(p.batch * p.m * p.n * p.k), differentiableInputCount: 2,
          makeInputs: { [random(aShape, seed: 1), random(bShape, seed: 2)] },
          forward: { [$0[0].matmul($0[1], transposeSelf: ta, transposeOther: tb)] },
          backward: { inputs, g in
            // C = op(A)·op(B): ∂op(A) = G·op(B)ᵀ, ∂op(B) = op(A)ᵀ·G, transposed back where op transposes.
            let (a, b, dc) = (inputs[0], inputs[1], g[0])
            let da = ta ? b.matmul(dc, transposeSelf: tb, transposeOther: true) : dc.matmul(b, transposeOther: !tb)
            let db = tb ? dc.matmul(a, transposeSelf: true, transposeOther: ta) : a.matmul(dc, transposeSelf: !ta)
            return [da, db]
          }))
    }
    let linearShapes: [(x: [Int], out: Int)] = large ? [([32, 28, 28, 64], 256)] : [([3, 5, 13], 11), ([4, 1], 3)]
    for (xShape, out) in linearShapes {
      let inFeatures = xShape.last!
      let rows = xShape.dropLast().reduce(1, *)
      result.append(
        BackendOpCase(
          op: "linear", variant: "x\(describe(xShape)) w[\(out),\(inFeatures)] +b", tolerance: 1e-5,
          checksFiniteDifferences: !large, forwardFLOPs: 2 * Double(rows * out * inFeatures),
          differentiableInputCount: 3,
          makeInputs: { [random(xShape, seed: 3), random([out, inFeatures], seed: 4), random([out], seed: 5)] },
          forward: { [$0[0].linear(weight: $0[1], bias: $0[2])] },
          backward: { inputs, g in
            let grads = Tensor.linearBackward(input: inputs[0], weight: inputs[1], outputGradient: g[0], hasBias: true)
            return [grads.input!, grads.weight, grads.bias!]
          }))
    }
    return result
  }

  // MARK: Elementwise and reductions

  static func elementwiseCases(_ large: Bool) -> [BackendOpCase] {
    var result: [BackendOpCase] = []
    let pairs: [([Int], [Int])] =
      large
      ? [([32, 28, 28, 64], [32, 28, 28, 64]), ([32, 28, 28, 64], [64])]
      : [([2, 5, 7, 6], [2, 5, 7, 6]), ([2, 5, 7, 6], [6]), ([3, 1, 5], [4, 1]), ([2, 3, 4, 5], [2, 1, 1, 5]),
        ([], [3, 2])]
    let operators: [(String, @Sendable (Tensor, Tensor) -> Tensor)] = [
      ("add", { $0 + $1 }), ("subtract", { $0 - $1 }), ("multiply", { $0 * $1 }),
    ]
    for (aShape, bShape) in pairs {
      for (name, apply) in operators {
        let outputShape = Tensor.broadcastShape(aShape, bShape)
        result.append(
          BackendOpCase(
            op: name, variant: "\(describe(aShape)) \(describe(bShape))", tolerance: 1e-6,
            checksFiniteDifferences: !large && aShape.count == 3, forwardFLOPs: 0, differentiableInputCount: 2,
            makeInputs: { [random(aShape, seed: 6), random(bShape, seed: 7)] },
            forward: { [apply($0[0], $0[1])] },
            backward: { inputs, g in
              let (a, b, dy) = (inputs[0], inputs[1], g[0])
              switch name {
              case "add": return [dy.sum(toShape: a.shape), dy.sum(toShape: b.shape)]
              case "subtract": return [dy.sum(toShape: a.shape), dy.negated().sum(toShape: b.shape)]
              default:
                return [
                  Tensor.sumOfProducts(dy, b.broadcasted(to: outputShape), toShape: a.shape),
                  Tensor.sumOfProducts(dy, a.broadcasted(to: outputShape), toShape: b.shape),
                ]
              }
            }))
      }
    }
    let reductions: [([Int], [Int])] = large ? [([32, 28, 28, 64], [0, 1, 2])] : [([3, 5, 7], [0, 2]), ([4, 9], [0]), ([2, 3, 5, 4], [1, 2])]
    for (shape, axes) in reductions {
      result.append(
        BackendOpCase(
          op: "sum", variant: "\(describe(shape)) axes \(axes)", tolerance: 1e-5, checksFiniteDifferences: !large,
          differentiableInputCount: 1, makeInputs: { [random(shape, seed: 8)] },
          forward: { [$0[0].sum(alongAxes: axes, keepingDimensions: true)] },
          backward: { inputs, g in [g[0].broadcasted(to: inputs[0].shape)] }))
    }
    let scalarShape = large ? [32, 28, 28, 64] : [3, 37]
    result.append(
      BackendOpCase(
        op: "reduceAll", variant: "\(describe(scalarShape)) sum mean squaredSum maxAbs", tolerance: 1e-5,
        differentiableInputCount: 1, makeInputs: { [random(scalarShape, seed: 9)] },
        forward: { inputs in
          let x = inputs[0]
          return [x.sum(), x.mean(), Tensor(Float(x.squaredSum())), Tensor(x.maxAbs())]
        }))
    return result
  }

  // MARK: Activations and loss

  static func activationCases(_ large: Bool) -> [BackendOpCase] {
    let shape = large ? [32, 28, 28, 256] : [2, 5, 19]
    let c = shape.last!
    let rows = shape.dropLast().reduce(1, *)
    let (batch, classes) = large ? (256, 1000) : (6, 11)
    let labels = (0..<batch).map { ($0 * 7 + 3) % classes }
    return [
      BackendOpCase(
        op: "gelu", variant: describe(shape), tolerance: 1e-5, checksFiniteDifferences: !large,
        differentiableInputCount: 1, makeInputs: { [random(shape, seed: 10, lower: -4, upper: 4)] },
        forward: { [$0[0].gelu()] },
        backward: { inputs, g in [inputs[0].geluBackward(outputGradient: g[0])] }),
      BackendOpCase(
        op: "biasGELU", variant: "\(describe(shape)) +b[\(c)]", tolerance: 1e-5, checksFiniteDifferences: !large,
        differentiableInputCount: 2,
        makeInputs: { [random(shape, seed: 11, lower: -3, upper: 3), random([c], seed: 12)] },
        forward: { [$0[0].biasGELU(bias: $0[1])] },
        backward: { inputs, g in
          let grads = inputs[0].biasGELUBackward(bias: inputs[1], outputGradient: g[0])
          return [grads.input, grads.bias]
        }),
      BackendOpCase(
        op: "softmax", variant: "[\(rows),\(c)]", tolerance: 1e-5, differentiableInputCount: 1,
        makeInputs: { [random([rows, c], seed: 13, lower: -5, upper: 5)] },
        forward: { [$0[0].softmax()] }),
      BackendOpCase(
        op: "softmaxCrossEntropy", variant: "[\(batch),\(classes)] smoothing 0.1", tolerance: 1e-5,
        checksFiniteDifferences: !large, differentiableInputCount: 1,
        makeInputs: { [random([batch, classes], seed: 14, lower: -3, upper: 3)] },
        // The probabilities it also returns are checked through the backward pass, which uses them.
        forward: { [Tensor($0[0].softmaxCrossEntropy(labels: labels, labelSmoothing: 0.1).loss)] },
        stagedBackward: { inputs in
          let probabilities = inputs[0].softmaxCrossEntropy(labels: labels, labelSmoothing: 0.1).probabilities
          return { g in
            [
              Tensor.softmaxCrossEntropyBackward(
                probabilities: probabilities, labels: labels, labelSmoothing: 0.1, scale: g[0].scalar / Float(batch))
            ]
          }
        }),
    ]
  }

  // MARK: Normalization

  static func normalizationCases(_ large: Bool) -> [BackendOpCase] {
    // Large: a 224² model's first stage, and quadranet-28's first two stages at batch 64.
    let shapes = large ? [[32, 28, 28, 64], [64, 14, 14, 40], [64, 7, 7, 80]] : [[3, 4, 21], [2, 1, 1, 8], [5, 3]]
    return shapes.map { shape in
      let c = shape.last!
      return BackendOpCase(
        op: "layerNorm", variant: describe(shape), tolerance: 2e-5, checksFiniteDifferences: !large,
        differentiableInputCount: 3,
        makeInputs: {
          // A common offset makes the variance computation non-trivial.
          [random(shape, seed: 15, lower: 2, upper: 4), random([c], seed: 16), random([c], seed: 17)]
        },
        forward: { [$0[0].layerNorm(weight: $0[1], bias: $0[2]).output] },
        stagedBackward: { inputs in
          let statistics = inputs[0].layerNorm(weight: inputs[1], bias: inputs[2]).statistics
          return { g in
            let grads = inputs[0].layerNormBackward(outputGradient: g[0], weight: inputs[1], statistics: statistics)
            return [grads.input, grads.weight, grads.bias]
          }
        })
    }
  }

  /// The fused residual MLP (LayerNorm, expand, GELU, project, layer scale, residual); inputs `x` then
  /// ``ResidualMLPParameters/all``.
  static func residualMLPCases(_ large: Bool) -> [BackendOpCase] {
    // The large shapes: quadranet-28's three stages at batch 64 (the third outgrows L2 and runs composed),
    // then quadranet-t's stages 1–3 at 224², batch 16 (its third stage is 27 of its 36 blocks).
    let shapes: [(x: [Int], hidden: Int)] =
      large
      ? [([64, 14, 14, 40], 80), ([64, 7, 7, 80], 160), ([64, 3, 3, 160], 320), ([16, 56, 56, 64], 256),
        ([16, 28, 28, 128], 512), ([16, 14, 14, 256], 1024)]
      : [([3, 5, 7, 9], 13), ([2, 17], 8)]
    return shapes.map { xShape, h in
      let c = xShape.last!
      let rows = xShape.reduce(1, *) / c
      return BackendOpCase(
        op: "residualMLP", variant: "x\(describe(xShape)) H\(h)", tolerance: 1e-4, checksFiniteDifferences: !large,
        forwardFLOPs: 4 * Double(rows * h * c), differentiableInputCount: 8,
        makeInputs: {
          // Weights at the scale of a fan-in initialization, so GELU sees values on both sides of 0.
          [
            random(xShape, seed: 40, lower: 1, upper: 3), random([c], seed: 41, lower: 0.5, upper: 1.5),
            random([c], seed: 42), random([h, c], seed: 43, lower: -0.5, upper: 0.5), random([h], seed: 44),
            random([c, h], seed: 45, lower: -0.5, upper: 0.5), random([c], seed: 46), random([c], seed: 47),
          ]
        },
        forward: { inputs in
          [inputs[0].residualMLP(parameters: ResidualMLPParameters(Array(inputs[1...]))).output]
        },
        stagedBackward: { inputs in
          let parameters = ResidualMLPParameters(Array(inputs[1...]))
          let saved = inputs[0].residualMLP(parameters: parameters).saved
          return { g in
            let grads = inputs[0].residualMLPBackward(parameters: parameters, saved: saved, outputGradient: g[0])
            return [grads.input] + grads.parameters.all
          }
        })
    }
  }

  /// The layer-scaled residual join `x + γ ⊙ m`; inputs `x`, `m`, `γ`.
  static func layerScaleResidualCases(_ large: Bool) -> [BackendOpCase] {
    let shapes: [[Int]] = large ? [[64, 14, 14, 40]] : [[3, 5, 7, 9], [2, 17], [1, 1, 1, 1], [4, 3, 24]]
    return shapes.map { xShape in
      let c = xShape.last!
      return BackendOpCase(
        op: "layerScaleResidual", variant: "x\(describe(xShape))", tolerance: 1e-5, checksFiniteDifferences: !large,
        forwardFLOPs: 2 * Double(xShape.reduce(1, *)), differentiableInputCount: 3,
        makeInputs: { [random(xShape, seed: 50), random(xShape, seed: 51), random([c], seed: 52)] },
        forward: { inputs in [inputs[0].layerScaleResidual(branch: inputs[1], scale: inputs[2])] },
        backward: { inputs, g in
          let grads = Tensor.layerScaleResidualBackward(branch: inputs[1], scale: inputs[2], outputGradient: g[0])
          return [g[0], grads.branch, grads.scale]
        })
    }
  }

  // MARK: Convolutions

  static func convolutionCases(_ large: Bool) -> [BackendOpCase] {
    var result: [BackendOpCase] = []
    let depthwise: [(x: [Int], k: Int, bias: Bool)] =
      large ? [([32, 56, 56, 64], 7, true)] : [([2, 6, 7, 11], 3, true), ([3, 9, 10, 13], 5, false), ([1, 4, 5, 17], 7, true)]
    for (xShape, k, hasBias) in depthwise {
      let c = xShape[3]
      result.append(
        BackendOpCase(
          op: "depthwiseConv2D", variant: "x\(describe(xShape)) k\(k)\(hasBias ? " +b" : "")", tolerance: 1e-5,
          checksFiniteDifferences: !large && k == 3, forwardFLOPs: 2 * Double(xShape.reduce(1, *) * k * k),
          differentiableInputCount: hasBias ? 3 : 2,
          makeInputs: {
            [random(xShape, seed: 18), random([k, k, c], seed: 19)] + (hasBias ? [random([c], seed: 20)] : [])
          },
          forward: { [$0[0].depthwiseConv2D(weight: $0[1], bias: hasBias ? $0[2] : nil)] },
          backward: { inputs, g in
            let grads = Tensor.depthwiseConv2DBackward(
              input: inputs[0], weight: inputs[1], outputGradient: g[0], needsInputGradient: true, hasBias: hasBias)
            return [grads.input!, grads.weight] + (grads.bias.map { [$0] } ?? [])
          }))
    }
    let dense: [(x: [Int], w: [Int], stride: (Int, Int), padding: (Int, Int))] =
      large
      ? [([32, 56, 56, 3], [64, 4, 4, 3], (4, 4), (0, 0)), ([32, 28, 28, 64], [128, 2, 2, 64], (2, 2), (0, 0)),
        // quadranet-28's stem and downsampling layers at batch 64.
        ([64, 28, 28, 1], [40, 2, 2, 1], (2, 2), (0, 0)), ([64, 14, 14, 40], [80, 2, 2, 40], (2, 2), (0, 0)),
        ([64, 7, 7, 80], [160, 2, 2, 80], (2, 2), (0, 0)),
        // The full-resolution search space's 3×3 stride-1 stem and first downsampling (stop 32's pick).
        ([64, 28, 28, 1], [16, 3, 3, 1], (1, 1), (1, 1)), ([64, 28, 28, 16], [40, 2, 2, 16], (2, 2), (0, 0))]
      : [([2, 9, 8, 5], [7, 3, 3, 5], (2, 1), (1, 1)), ([2, 8, 8, 3], [6, 4, 4, 3], (4, 4), (0, 0)),
        ([3, 5, 4, 6], [5, 1, 1, 6], (1, 1), (0, 0))]
    for (xShape, wShape, stride, padding) in dense {
      let geometry = Convolution2D.Geometry(
        batch: xShape[0], height: xShape[1], width: xShape[2], inputChannels: xShape[3], outputChannels: wShape[0],
        kernelHeight: wShape[1], kernelWidth: wShape[2], stride: stride, padding: padding)
      result.append(
        BackendOpCase(
          op: "conv2D", variant: "x\(describe(xShape)) w\(describe(wShape)) s\(stride) p\(padding)",
          tolerance: 1e-5, checksFiniteDifferences: !large && wShape[1] == 3,
          forwardFLOPs: 2 * Double(geometry.outputShape.reduce(1, *) * geometry.patchCount),
          differentiableInputCount: 3,
          makeInputs: { [random(xShape, seed: 21), random(wShape, seed: 22), random([wShape[0]], seed: 23)] },
          forward: { [$0[0].conv2D(weight: $0[1], bias: $0[2], stride: stride, padding: padding)] },
          backward: { inputs, g in
            let grads = Tensor.conv2DBackward(
              input: inputs[0], weight: inputs[1], outputGradient: g[0], stride: stride, padding: padding,
              needsInputGradient: true, hasBias: true)
            return [grads.input!, grads.weight, grads.bias!]
          }))
    }
    return result
  }

  // MARK: Quadratic neurons

  static func quadraticCases(_ large: Bool) -> [BackendOpCase] {
    var result: [BackendOpCase] = []
    let depthwise: [(x: [Int], k: Int, bias: Bool)] =
      // The large shapes: a 224² model's first stage, and the three stages of quadranet-28's 28² step (batch 64).
      large
      ? [([32, 56, 56, 64], 7, true), ([64, 14, 14, 40], 3, true), ([64, 7, 7, 80], 3, true), ([64, 3, 3, 160], 3, true)]
      : [([2, 7, 6, 9], 3, true), ([2, 5, 8, 11], 5, false), ([1, 3, 4, 19], 7, true)]
    for (xShape, k, hasBias) in depthwise {
      let c = xShape[3]
      result.append(
        BackendOpCase(
          op: "quadraticDepthwiseConv2D", variant: "x\(describe(xShape)) k\(k)\(hasBias ? " +b" : "")",
          tolerance: 2e-5, checksFiniteDifferences: !large && k == 3,
          forwardFLOPs: 6 * Double(xShape.reduce(1, *) * k * k), differentiableInputCount: hasBias ? 7 : 4,
          makeInputs: {
            [random(xShape, seed: 24)] + (0..<3).map { random([k, k, c], seed: 25 + UInt64($0)) }
              + (hasBias ? (0..<3).map { random([c], seed: 28 + UInt64($0)) } : [])
          },
          forward: { inputs in
            [inputs[0].quadraticDepthwiseConv2D(weights: triple(inputs, 1), biases: hasBias ? triple(inputs, 4) : nil)]
          },
          backward: { inputs, g in
            let grads = Tensor.quadraticDepthwiseConv2DBackward(
              input: inputs[0], weights: triple(inputs, 1), biases: hasBias ? triple(inputs, 4) : nil,
              outputGradient: g[0])
            return [grads.input!] + list(grads.weights) + (grads.biases.map(list) ?? [])
          }))
    }
    // The mixer fused with its block's LayerNorm; inputs x, γ, β, the weights and the biases.
    for (xShape, k, hasBias) in depthwise {
      let c = xShape[3]
      let differentiable = hasBias ? 9 : 6
      result.append(
        BackendOpCase(
          op: "normalizedQuadraticDepthwiseConv2D", variant: "x\(describe(xShape)) k\(k)\(hasBias ? " +b" : "")",
          tolerance: 5e-5, checksFiniteDifferences: !large && k == 3,
          forwardFLOPs: 6 * Double(xShape.reduce(1, *) * k * k), differentiableInputCount: differentiable,
          makeInputs: {
            // A common offset makes the statistics non-trivial; γ near 1 keeps x̂ at unit scale.
            [random(xShape, seed: 50, lower: 1, upper: 3), random([c], seed: 51, lower: 0.5, upper: 1.5),
             random([c], seed: 52)]
              + (0..<3).map { random([k, k, c], seed: 53 + UInt64($0), lower: -0.5, upper: 0.5) }
              + (hasBias ? (0..<3).map { random([c], seed: 56 + UInt64($0)) } : [])
          },
          forward: { inputs in
            [inputs[0].normalizedQuadraticDepthwiseConv2D(
              normalization: LayerNormParameters(weight: inputs[1], bias: inputs[2], epsilon: 1e-6),
              weights: triple(inputs, 3), biases: hasBias ? triple(inputs, 6) : nil).output]
          },
          stagedBackward: { inputs in
            let normalization = LayerNormParameters(weight: inputs[1], bias: inputs[2], epsilon: 1e-6)
            let statistics = inputs[0].normalizedQuadraticDepthwiseConv2D(
              normalization: normalization, weights: triple(inputs, 3), biases: hasBias ? triple(inputs, 6) : nil
            ).statistics
            return { g in
              let grads = Tensor.normalizedQuadraticDepthwiseConv2DBackward(
                input: inputs[0], normalization: normalization, statistics: statistics, weights: triple(inputs, 3),
                biases: hasBias ? triple(inputs, 6) : nil, outputGradient: g[0])
              return [grads.input, grads.normalization.weight, grads.normalization.bias] + list(grads.weights)
                + (grads.biases.map(list) ?? [])
            }
          }))
    }
    let linear: (x: [Int], out: Int) = large ? ([32, 28, 28, 64], 64) : ([3, 5, 7], 6)
    let inFeatures = linear.x.last!
    result.append(
      BackendOpCase(
        op: "quadraticLinear", variant: "x\(describe(linear.x)) w[\(linear.out),\(inFeatures)]×3 +b",
        tolerance: 2e-5, checksFiniteDifferences: !large,
        forwardFLOPs: 6 * Double(linear.x.reduce(1, *) * linear.out), differentiableInputCount: 7,
        makeInputs: {
          [random(linear.x, seed: 31)] + (0..<3).map { random([linear.out, inFeatures], seed: 32 + UInt64($0)) }
            + (0..<3).map { random([linear.out], seed: 35 + UInt64($0)) }
        },
        forward: { [$0[0].quadraticLinear(weights: triple($0, 1), biases: triple($0, 4))] },
        backward: { inputs, g in
          let grads = Tensor.quadraticLinearBackward(
            input: inputs[0], weights: triple(inputs, 1), biases: triple(inputs, 4), outputGradient: g[0])
          return [grads.input!] + list(grads.weights) + (grads.biases.map(list) ?? [])
        }))
    let conv: (x: [Int], w: [Int]) = large ? ([32, 28, 28, 32], [32, 3, 3, 32]) : ([2, 6, 5, 4], [3, 3, 3, 4])
    let outputPixels = conv.x[0] * conv.x[1] * conv.x[2]
    result.append(
      BackendOpCase(
        op: "quadraticConv2D", variant: "x\(describe(conv.x)) w\(describe(conv.w))×3 p(1, 1) +b", tolerance: 2e-5,
        checksFiniteDifferences: !large,
        forwardFLOPs: 6 * Double(outputPixels * conv.w.reduce(1, *)), differentiableInputCount: 7,
        makeInputs: {
          [random(conv.x, seed: 38)] + (0..<3).map { random(conv.w, seed: 39 + UInt64($0)) }
            + (0..<3).map { random([conv.w[0]], seed: 42 + UInt64($0)) }
        },
        forward: { [$0[0].quadraticConv2D(weights: triple($0, 1), biases: triple($0, 4), padding: (1, 1))] },
        backward: { inputs, g in
          let grads = Tensor.quadraticConv2DBackward(
            input: inputs[0], weights: triple(inputs, 1), biases: triple(inputs, 4), outputGradient: g[0],
            padding: (1, 1))
          return [grads.input!] + list(grads.weights) + (grads.biases.map(list) ?? [])
        }))
    return result
  }

  // MARK: Layout

  static func layoutCases(_ large: Bool) -> [BackendOpCase] {
    let shape = large ? [32, 64, 28, 28] : [2, 3, 4, 5]
    let images = large ? [256, 28, 28, 1] : [5, 6, 7, 3]
    let indices = large ? (0..<128).map { ($0 * 37) % 256 } : [4, 0, 3, 3, 1, 2]
    let transforms = indices.indices.map { ImageTransform(dy: $0 % 5 - 2, dx: ($0 * 3) % 5 - 2, flip: $0 % 2 == 1) }
    let pieces = large ? [32, 64, 32] : [2, 5, 1]
    let piecesShape = Array(shape.dropLast()) + [pieces.reduce(0, +)]
    return [
      BackendOpCase(
        op: "permute", variant: "\(describe(shape)) → NHWC", tolerance: 0, differentiableInputCount: 1,
        makeInputs: { [random(shape, seed: 45)] }, forward: { [$0[0].permuted([0, 2, 3, 1])] },
        backward: { _, g in [g[0].permuted([0, 3, 1, 2])] }),
      BackendOpCase(
        op: "concat", variant: "pieces \(pieces) of \(describe(piecesShape)) on the last axis", tolerance: 0,
        differentiableInputCount: pieces.count,
        makeInputs: {
          pieces.enumerated().map { random(Array(shape.dropLast()) + [$0.element], seed: 46 + UInt64($0.offset)) }
        },
        forward: { [Tensor.concat($0, axis: -1)] },
        backward: { _, g in g[0].split(sizes: pieces, axis: -1) }),
      BackendOpCase(
        op: "globalMeanPool", variant: describe(piecesShape), tolerance: 1e-6, differentiableInputCount: 1,
        makeInputs: { [random(piecesShape, seed: 49)] }, forward: { [$0[0].globalMeanPooled()] },
        backward: { inputs, g in [Tensor.globalMeanPoolBackward(outputGradient: g[0], inputShape: inputs[0].shape)] }),
      BackendOpCase(
        op: "gatherImages", variant: "\(indices.count) of \(describe(images)), shifted and flipped", tolerance: 0,
        differentiableInputCount: 0, makeInputs: { [random(images, seed: 50)] },
        forward: { [Tensor.gatheringImages($0[0], indices: indices, transforms: transforms, fill: -0.5)] }),
    ]
  }

  static func triple(_ inputs: [Tensor], _ start: Int) -> TensorTriple {
    (inputs[start], inputs[start + 1], inputs[start + 2])
  }

  static func list(_ triple: TensorTriple) -> [Tensor] { [triple.0, triple.1, triple.2] }

  // MARK: Parameter updates

  /// AdamW, SGD (plain, momentum, Nesterov) and the moving-average combination: the updated
  /// parameter and state tensors are the outputs (memory-bound, so GB/s is reported).
  static func parameterUpdateCases(_ large: Bool) -> [BackendOpCase] {
    let shape = large ? [1536, 384] : [3, 37]
    var result = [
      BackendOpCase(
        op: "adamWStep", variant: describe(shape), tolerance: 1e-6, differentiableInputCount: 0,
        makeInputs: {
          [random(shape, seed: 40), random(shape, seed: 41), random(shape, seed: 42), random(shape, seed: 43, lower: 0)]
        },
        forward: { inputs in
          var (theta, m, v) = (inputs[0], inputs[2], inputs[3])
          Tensor.adamWStep(
            parameter: &theta, gradient: inputs[1], firstMoment: &m, secondMoment: &v, beta1: 0.9, beta2: 0.999,
            epsilon: 1e-8, stepSize: 1e-3 / 0.19, inverseRootSecondCorrection: 1 / (0.002_997_001 as Float).squareRoot(),
            parameterScale: 1 - 1e-3 * 0.05)
          return [theta, m, v]
        }),
      BackendOpCase(
        op: "linearCombination", variant: describe(shape), tolerance: 1e-6, differentiableInputCount: 0,
        makeInputs: { [random(shape, seed: 44), random(shape, seed: 45)] },
        forward: { inputs in
          var shadow = inputs[0]
          shadow.formLinearCombination(scaledBy: 0.999, adding: inputs[1], scaledBy: 0.001)
          return [shadow]
        }),
    ]
    for (momentum, nesterov) in [(Float(0), false), (0.9, false), (0.9, true)] {
      result.append(
        BackendOpCase(
          op: "sgdStep", variant: "\(describe(shape)) momentum \(momentum)\(nesterov ? " nesterov" : "")", tolerance: 1e-6,
          differentiableInputCount: 0,
          makeInputs: { [random(shape, seed: 46), random(shape, seed: 47), random(shape, seed: 48)] },
          forward: { inputs in
            var theta = inputs[0]
            guard momentum > 0 else {
              Tensor.sgdStep(parameter: &theta, gradient: inputs[1], learningRate: 0.1, weightDecay: 1e-4)
              return [theta]
            }
            var buffer = inputs[2]
            Tensor.sgdStep(
              parameter: &theta, gradient: inputs[1], momentumBuffer: &buffer, learningRate: 0.1, momentum: momentum,
              weightDecay: 1e-4, nesterov: nesterov)
            return [theta, buffer]
          }))
    }
    return result
  }
}
