import Foundation
import Testing

@testable import QuadraModels

/// AdamW and SGD: the update math, the saved state, its checks, and in-place updates.
@Suite struct OptimizerTests {
  /// A parameter with weight decay (`a`, a "weight") and one without (`b`, a "bias").
  func makeParameters(_ a: [Float] = [1, -2], _ b: [Float] = [0.5]) -> [(name: String, parameter: Parameter)] {
    [
      (name: "layer.weight", parameter: Parameter(Variable(Tensor(shape: [a.count], scalars: a), requiresGrad: true), weightDecay: true)),
      (name: "layer.bias", parameter: Parameter(Variable(Tensor(shape: [b.count], scalars: b), requiresGrad: true), weightDecay: false)),
    ]
  }

  func setGradients(_ parameters: [(name: String, parameter: Parameter)], _ gradients: [[Float]]) {
    for (entry, gradient) in zip(parameters, gradients) {
      entry.parameter.variable.grad = Tensor(shape: [gradient.count], scalars: gradient)
    }
  }

  func values(_ parameters: [(name: String, parameter: Parameter)]) -> [[Float]] {
    parameters.map { $0.parameter.variable.value.scalars }
  }

  // MARK: - SGD

  /// Gradients of the three steps for `layer.weight` and `layer.bias`.
  static let sgdGradients: [[[Float]]] = [[[0.5, 1], [2]], [[-0.25, 0.5], [1]], [[1, -1], [-1]]]

  func runSGD(momentum: Float, nesterov: Bool) throws -> [[[Float]]] {
    let parameters = makeParameters()
    let sgd = try SGD(parameters: parameters, learningRate: 0.1, momentum: momentum, nesterov: nesterov, weightDecay: 0.01)
    return Self.sgdGradients.map { gradients in
      setGradients(parameters, gradients)
      sgd.update()
      return values(parameters)
    }
  }

  func expectClose(_ actual: [[[Float]]], _ expected: [[[Double]]], tolerance: Double = 1e-6) {
    for (step, (a, e)) in zip(actual, expected).enumerated() {
      for (x, y) in zip(a.joined(), e.joined()) {
        #expect(abs(Double(x) - y) <= tolerance, "step \(step + 1): \(a) vs \(e)")
      }
    }
  }

  /// lr 0.1, λ 0.01 on the weight only. Step 1 of the weight: d = g + λθ = (0.5 + 0.01, 1 − 0.02),
  /// θ − 0.1·d = (0.949, −2.098); the bias has no decay: 0.5 − 0.1·2 = 0.3.
  @Test func plainSGDMatchesHandComputedSteps() throws {
    expectClose(
      try runSGD(momentum: 0, nesterov: false),
      [[[0.949, -2.098], [0.3]], [[0.973051, -2.145902], [0.2]], [[0.872077949, -2.043756098], [0.3]]])
  }

  /// μ 0.9: step 1 is plain SGD (b = d). Step 2 of weight[0]: d = −0.25 + 0.01·0.949 = −0.24051,
  /// b = 0.9·0.51 − 0.24051 = 0.21849, θ = 0.949 − 0.021849 = 0.927151.
  @Test func momentumSGDMatchesHandComputedSteps() throws {
    expectClose(
      try runSGD(momentum: 0.9, nesterov: false),
      [[[0.949, -2.098], [0.3]], [[0.927151, -2.234102], [0.02]], [[0.806559749, -2.254359698], [-0.132]]])
  }

  /// Nesterov: θ − lr·(d + μb). Step 1 of weight[0]: d = b = 0.51, θ = 1 − 0.1·(0.51 + 0.459) = 0.9031.
  @Test func nesterovSGDMatchesHandComputedSteps() throws {
    expectClose(
      try runSGD(momentum: 0.9, nesterov: true),
      [[[0.9031, -2.1862], [0.12]], [[0.90757411, -2.35642622], [-0.232]], [[0.6981892082, -2.2721201882], [-0.2688]]])
  }

  @Test func invalidHyperparametersAreErrorsNamingTheRange() {
    let parameters = makeParameters()
    let nesterovWithoutMomentum = #expect(throws: OptimizerError.self) {
      _ = try SGD(parameters: parameters, learningRate: 0.1, momentum: 0, nesterov: true)
    }
    #expect("\(nesterovWithoutMomentum!)".contains("SGD momentum must be in (0, 1) with Nesterov, got 0.0"))
    #expect(throws: OptimizerError.self) { _ = try SGD(parameters: parameters, learningRate: 0.1, momentum: 1) }
    #expect(throws: OptimizerError.self) { _ = try SGD(parameters: parameters, learningRate: .nan) }
    let beta = #expect(throws: OptimizerError.self) { _ = try AdamW(parameters: parameters, beta2: 1) }
    #expect("\(beta!)".contains("AdamW beta2 must be in [0, 1), got 1.0"))
    #expect(throws: OptimizerError.self) { _ = try AdamW(parameters: parameters, epsilon: 0) }
    #expect(throws: OptimizerError.self) { _ = try GradientNormClipping(maxNorm: -1) }
  }

  // MARK: - AdamW

  /// The original AdamW loop, element by element, in the same operation order.
  struct ReferenceAdamW {
    var m: [[Float]]
    var v: [[Float]]
    var step = 0

    init(shapes: [Int]) {
      m = shapes.map { [Float](repeating: 0, count: $0) }
      v = m
    }

    mutating func update(_ theta: inout [[Float]], gradients: [[Float]], decays: [Bool], lr: Float, weightDecay: Float) {
      let (b1, b2, eps): (Float, Float, Float) = (0.9, 0.999, 1e-8)
      step += 1
      let t = Float(step)
      let correction1 = 1 - pow(b1, t)
      let correction2 = 1 - pow(b2, t)
      for p in theta.indices {
        let decay: Float = decays[p] ? 1 - lr * weightDecay : 1
        let stepSize = lr / correction1
        let inverseSqrtCorrection2 = 1 / correction2.squareRoot()
        for i in theta[p].indices {
          let g = gradients[p][i]
          let mi = b1 * m[p][i] + (1 - b1) * g
          let vi = b2 * v[p][i] + (1 - b2) * g * g
          m[p][i] = mi
          v[p][i] = vi
          let denominator = vi.squareRoot() * inverseSqrtCorrection2 + eps
          theta[p][i] = theta[p][i] * decay - stepSize * mi / denominator
        }
      }
    }
  }

  /// Bit for bit against the scalar loop, one tensor at a time and in the multi-tensor step (whose thread
  /// ranges cut tensors anywhere, also inside a vector's 8 elements) on 1–3 threads.
  @Test(arguments: [false, true], [1, 2, 3])
  func adamWIsBitExactAgainstTheReferenceLoop(multiTensor: Bool, threads: Int) throws {
    try Parallel.withThreadCount(threads) { try checkAdamWAgainstTheReferenceLoop(multiTensor: multiTensor) }
  }

  func checkAdamWAgainstTheReferenceLoop(multiTensor: Bool) throws {
    var generator = RandomGenerator(seed: 11)
    // Large enough (> 2¹⁵ elements) to run on several threads.
    let weight = Tensor.normal(shape: [70_001], using: &generator).scalars
    let bias = Tensor.normal(shape: [33], using: &generator).scalars
    let parameters = makeParameters(weight, bias)
    let adamW = try AdamW(parameters: parameters, learningRate: 3e-3, weightDecay: 0.05)
    adamW.usesMultiTensorStep = multiTensor
    var reference = ReferenceAdamW(shapes: [weight.count, bias.count])
    var expected = [weight, bias]
    for step in 0..<5 {
      let gradients = [
        Tensor.normal(shape: [weight.count], using: &generator).scalars,
        Tensor.normal(shape: [bias.count], using: &generator).scalars.map { $0 * 1e-3 },
      ]
      let lr: Float = 3e-3 * Float(step + 1) / 5  // a warm-up: the rate changes between steps
      setGradients(parameters, gradients)
      adamW.learningRate = lr
      adamW.update()
      reference.update(&expected, gradients: gradients, decays: [true, false], lr: lr, weightDecay: 0.05)
      #expect(values(parameters).map { $0.map(\.bitPattern) } == expected.map { $0.map(\.bitPattern) }, "step \(step + 1)")
    }
    let state = adamW.stateTensors
    #expect(state["exp_avg.layer.weight"]!.scalars.map(\.bitPattern) == reference.m[0].map(\.bitPattern))
    #expect(state["exp_avg_sq.layer.bias"]!.scalars.map(\.bitPattern) == reference.v[1].map(\.bitPattern))
    #expect(adamW.step == 5)
  }

  /// The multi-tensor step writes in place, but never into storage another tensor shares: a snapshot of
  /// a parameter or of the state (as a checkpoint being written holds) keeps its values.
  @Test func multiTensorStepLeavesSharedStorageAlone() throws {
    let parameters = makeParameters()
    let adamW = try AdamW(parameters: parameters, learningRate: 0.1)
    #expect(adamW.usesMultiTensorStep)
    setGradients(parameters, [[1, -1], [2]])
    adamW.update()
    let weight = parameters[0].parameter.variable.value
    let state = adamW.stateTensors
    let (weightBefore, momentBefore) = (weight.scalars, state["exp_avg.layer.weight"]!.scalars)
    setGradients(parameters, [[0.5, 0.5], [1]])
    adamW.update()
    #expect(weight.scalars == weightBefore)
    #expect(state["exp_avg.layer.weight"]!.scalars == momentBefore)
    #expect(parameters[0].parameter.variable.value.scalars != weightBefore)
    #expect(adamW.stateTensors["exp_avg.layer.weight"]!.scalars != momentBefore)
  }

  /// A parameter listed twice gets both updates one after the other, as with one tensor at a time.
  @Test func multiTensorStepAppliesARepeatedParameterTwice() throws {
    func run(multiTensor: Bool) throws -> [Float] {
      let parameter = Parameter(Variable(Tensor(shape: [3], scalars: [1, -2, 3]), requiresGrad: true), weightDecay: true)
      let adamW = try AdamW(parameters: [(name: "a", parameter: parameter), (name: "b", parameter: parameter)])
      adamW.usesMultiTensorStep = multiTensor
      for _ in 0..<2 {
        parameter.variable.grad = Tensor(shape: [3], scalars: [0.5, -1, 2])
        adamW.update()
      }
      return parameter.variable.value.scalars
    }
    #expect(try run(multiTensor: true).map(\.bitPattern) == run(multiTensor: false).map(\.bitPattern))
  }

  @Test func parametersWithoutAGradientAreLeftAlone() throws {
    let parameters = makeParameters()
    let adamW = try AdamW(parameters: parameters)
    parameters[0].parameter.variable.grad = Tensor(shape: [2], scalars: [1, 1])
    adamW.update()
    #expect(values(parameters)[1] == [0.5])
    #expect(values(parameters)[0] != [1, -2])
    // Its state exists (zeros), so a saved state is complete.
    #expect(adamW.stateTensors["exp_avg.layer.bias"]?.scalars == [0])
  }

  // MARK: - State

  func makeOptimizers(_ parameters: [(name: String, parameter: Parameter)]) throws -> [any Optimizer] {
    [
      try AdamW(parameters: parameters, learningRate: 1e-2), try SGD(parameters: parameters, learningRate: 0.1, momentum: 0.9),
      try SGD(parameters: parameters, learningRate: 0.1, momentum: 0.5, nesterov: true, weightDecay: 0.1),
    ]
  }

  @Test func stateRoundTripsAndContinuesBitForBit() throws {
    for kind in 0..<3 {
      let original = makeParameters()
      let optimizer = try makeOptimizers(original)[kind]
      #expect(optimizer.stateTensors.isEmpty)
      for gradients in Self.sgdGradients.prefix(2) {
        setGradients(original, gradients)
        optimizer.update()
      }
      let saved = optimizer.state
      let expectedKeys: Set<String> =
        kind == 0
        ? ["exp_avg.layer.weight", "exp_avg.layer.bias", "exp_avg_sq.layer.weight", "exp_avg_sq.layer.bias"]
        : ["momentum_buffer.layer.weight", "momentum_buffer.layer.bias"]
      #expect(Set(saved.tensors.keys) == expectedKeys)
      #expect(Set(optimizer.stateKeys(afterSteps: 2).map(\.key)) == expectedKeys)
      #expect(saved.step == 2)

      let restored = makeParameters(values(original)[0], values(original)[1])
      let resumed = try makeOptimizers(restored)[kind]
      try resumed.load(state: saved)
      #expect(resumed.step == 2)
      setGradients(original, Self.sgdGradients[2])
      setGradients(restored, Self.sgdGradients[2])
      optimizer.update()
      resumed.update()
      #expect(values(original).map { $0.map(\.bitPattern) } == values(restored).map { $0.map(\.bitPattern) })
    }
    // Plain SGD keeps no state.
    let parameters = makeParameters()
    let plain = try SGD(parameters: parameters, learningRate: 0.1)
    setGradients(parameters, Self.sgdGradients[0])
    plain.update()
    #expect(plain.stateTensors.isEmpty && plain.stateNames.isEmpty && plain.step == 1)
  }

  @Test func missingExtraAndMisshapenStateIsAnErrorNamingTheKeys() throws {
    let parameters = makeParameters()
    let adamW = try AdamW(parameters: parameters)
    setGradients(parameters, Self.sgdGradients[0])
    adamW.update()
    adamW.update()
    let complete = adamW.state

    func loadError(_ state: OptimizerState) -> OptimizerError? {
      let fresh = try! AdamW(parameters: makeParameters())
      do {
        try fresh.load(state: state)
        return nil
      } catch {
        // A failed load changes nothing.
        #expect(fresh.step == 0 && fresh.stateTensors.isEmpty)
        return error as? OptimizerError
      }
    }

    var withoutSecondMoments = complete
    withoutSecondMoments.tensors = complete.tensors.filter { !$0.key.hasPrefix("exp_avg_sq.") }
    let missing = loadError(withoutSecondMoments)
    #expect(missing == .stateMismatch(step: 2, missing: ["exp_avg_sq.layer.weight", "exp_avg_sq.layer.bias"], unexpected: [], wrongShapes: []))
    #expect("\(missing!)".contains("missing exp_avg_sq.layer.weight, exp_avg_sq.layer.bias"))

    var extra = complete
    extra.tensors["momentum_buffer.layer.weight"] = Tensor(zeros: [2])
    extra.tensors["exp_avg.layer.bias"] = Tensor(zeros: [3])
    #expect(
      loadError(extra)
        == .stateMismatch(
          step: 2, missing: [], unexpected: ["momentum_buffer.layer.weight"],
          wrongShapes: [.init(name: "exp_avg.layer.bias", expected: [1], found: [3])]))

    // Before the first step there is no state; after it the whole state is needed.
    #expect(loadError(OptimizerState(step: 0, tensors: complete.tensors))?.description.contains("unexpected exp_avg.layer.bias") == true)
    #expect(
      loadError(OptimizerState(step: 3, tensors: [:]))
        == .stateMismatch(
          step: 3,
          missing: ["exp_avg.layer.weight", "exp_avg_sq.layer.weight", "exp_avg.layer.bias", "exp_avg_sq.layer.bias"],
          unexpected: [], wrongShapes: []))
    #expect(loadError(OptimizerState(step: -1, tensors: [:])) == .invalidStep(-1))
    #expect(loadError(complete) == nil)
  }

  // MARK: - In-place updates

  /// Identity of every state tensor's storage.
  func storageIdentities(_ optimizer: any Optimizer) -> [String: ObjectIdentifier] {
    optimizer.stateTensors.mapValues { ObjectIdentifier($0.buffer) }
  }

  @Test func stepsUpdateStateAndParametersInPlace() throws {
    for kind in 0..<3 {
      let parameters = makeParameters()
      let optimizer = try makeOptimizers(parameters)[kind]
      setGradients(parameters, Self.sgdGradients[0])
      optimizer.update()
      var state = storageIdentities(optimizer)
      var values = parameters.map { ObjectIdentifier($0.parameter.variable.value.buffer) }
      #expect(!state.isEmpty)
      for step in 1..<3 {
        setGradients(parameters, Self.sgdGradients[step])
        optimizer.update()
        // A copy is allocated while the previous storage is alive, so it is another object than
        // the previous step's (an older, freed one could be reused: compare step to step).
        let nextState = storageIdentities(optimizer)
        let nextValues = parameters.map { ObjectIdentifier($0.parameter.variable.value.buffer) }
        #expect(nextState == state, "\(type(of: optimizer)) step \(step + 1)")
        #expect(nextValues == values)
        (state, values) = (nextState, nextValues)
      }
    }
  }

  @Test func emaAndClippingUpdateInPlace() throws {
    let parameters = makeParameters()
    let ema = ExponentialMovingAverage(parameters: parameters, decay: 0.5)
    let shadow = ema.shadow.mapValues { ObjectIdentifier($0.buffer) }
    for (_, parameter) in parameters { parameter.variable.updateValueInPlace { $0 *= 3 } }
    ema.update(from: parameters)
    #expect(ema.shadow.mapValues { ObjectIdentifier($0.buffer) } == shadow)
    ema.update(from: parameters)
    // 0.5·(0.5·w + 0.5·3w) + 0.5·3w = 2.5w
    #expect(ema.shadow["layer.weight"]?.scalars == [2.5, -5])

    setGradients(parameters, [[3, 0], [4]])
    let gradients = parameters.map { ObjectIdentifier($0.parameter.variable.grad!.buffer) }
    let norm = try GradientNormClipping(maxNorm: 1)
    #expect(clipGradientNorm(parameters, maxNorm: 10) == 5)  // below the limit: unchanged
    norm.processGradients(of: parameters, step: 0)
    #expect(parameters.map { ObjectIdentifier($0.parameter.variable.grad!.buffer) } == gradients)
    let clipped = parameters.map { $0.parameter.variable.grad!.scalars }
    #expect(abs(clipped[0][0] - 0.6) < 1e-6 && clipped[0][1] == 0 && abs(clipped[1][0] - 0.8) < 1e-6)
  }

  @Test func squaredNormAndLinearCombination() {
    var generator = RandomGenerator(seed: 3)
    let x = Tensor.normal(shape: [100_003], using: &generator)
    let expected = x.scalars.reduce(0.0) { $0 + Double($1) * Double($1) }
    #expect(abs(x.squaredSum() - expected) <= 1e-6 * expected)
    var y = Tensor(shape: [3], scalars: [1, 2, 3])
    y.formLinearCombination(scaledBy: 0.5, adding: Tensor(shape: [3], scalars: [2, 2, 2]), scaledBy: 2)
    #expect(y.scalars == [4.5, 5, 5.5])
  }
}
