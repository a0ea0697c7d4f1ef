import Foundation
import Synchronization
import QuadraIO
import QuadraModels

/// Hard limits on predicted costs; nil means unconstrained. Checked before any accuracy estimate.
public struct SearchConstraints: Codable, Sendable, Equatable {
  public var maxTrainMillisecondsPerImage: Double?
  public var maxInferMilliseconds: Double?
  public var maxTrainMemoryBytes: Int?
  public var maxParameters: Int?

  public init(
    maxTrainMillisecondsPerImage: Double? = nil, maxInferMilliseconds: Double? = nil, maxTrainMemoryBytes: Int? = nil,
    maxParameters: Int? = nil
  ) {
    self.maxTrainMillisecondsPerImage = maxTrainMillisecondsPerImage
    self.maxInferMilliseconds = maxInferMilliseconds
    self.maxTrainMemoryBytes = maxTrainMemoryBytes
    self.maxParameters = maxParameters
  }

  /// One constrained quantity: its flag, how to read it from predicted costs, and its limit.
  struct Bound {
    var flag: String
    var unit: String
    var value: (PredictedCosts) -> Double
    var limit: Double
    /// Whether the value is a memory prediction (exact or bounded, see ``MemoryEstimate``).
    var isMemory = false
  }

  var bounds: [Bound] {
    var result: [Bound] = []
    if let limit = maxTrainMillisecondsPerImage {
      result.append(Bound(flag: "--max-train-ms-per-image", unit: "ms", value: { $0.trainMillisecondsPerImage }, limit: limit))
    }
    if let limit = maxInferMilliseconds {
      result.append(Bound(flag: "--max-infer-ms", unit: "ms", value: { $0.inferMillisecondsBatch1 }, limit: limit))
    }
    if let limit = maxTrainMemoryBytes {
      result.append(
        Bound(flag: "--max-train-memory-mb", unit: "MiB", value: { Double($0.trainMemoryBytes) / 1_048_576 },
          limit: Double(limit) / 1_048_576, isMemory: true))
    }
    if let limit = maxParameters {
      result.append(Bound(flag: "--max-params", unit: "parameters", value: { Double($0.parameters) }, limit: Double(limit)))
    }
    return result
  }

  /// Whether `costs` meet every limit.
  public func admits(_ costs: PredictedCosts) -> Bool { bounds.allSatisfy { $0.value(costs) <= $0.limit } }

  /// Whether `costs` meet every limit except perhaps the memory limits.
  func admitsApartFromMemory(_ costs: PredictedCosts) -> Bool {
    bounds.allSatisfy { $0.isMemory || $0.value(costs) <= $0.limit }
  }
}

extension SearchConstraints: CustomStringConvertible {
  /// The limits in the CLI's terms, e.g. `--max-train-ms-per-image 0.81 ms, --max-params 1e+06 parameters`.
  public var description: String {
    let limits = bounds.map { String(format: "%@ %.4g %@", $0.flag, $0.limit, $0.unit) }
    return limits.isEmpty ? "none" : limits.joined(separator: ", ")
  }
}

/// A budget no architecture of the space meets.
public struct InfeasibleBudgetError: Error, CustomStringConvertible, LocalizedError {
  public var flag: String
  public var limit: Double
  public var cheapest: Architecture
  public var cheapestValue: Double
  public var unit: String

  public var description: String {
    String(
      format: "%@ %.4g %@ is below what the space allows: the cheapest architecture, %@, needs %.4g %@",
      flag, limit, unit, cheapest.name, cheapestValue, unit)
  }
  public var errorDescription: String? { description }
}

/// A budget whose limits the space meets one at a time but, as far as the search can find, not together: no
/// random draw met them all, and neither did the cheapest architecture for each limit nor the one that comes
/// closest to all of them (``closest``, with its value for each limit).
public struct JointlyInfeasibleBudgetError: Error, CustomStringConvertible, LocalizedError {
  /// Each limit with the closest architecture's value: flag, limit, value, unit.
  public var limits: [(flag: String, limit: Double, value: Double, unit: String)]
  public var closest: Architecture
  public var attempts: Int

  public var description: String {
    let parts = limits.map { String(format: "%@ %.4g %@ (it needs %.4g)", $0.flag, $0.limit, $0.unit, $0.value) }
    return "the limits together admit no architecture found in \(attempts) random draws nor by a descent from the "
      + "smallest choices; the closest, \(closest.name), against " + parts.joined(separator: ", ")
  }
  public var errorDescription: String? { description }
}

/// An evaluated architecture.
public struct Candidate: Codable, Sendable, Equatable {
  public var architecture: Architecture
  public var costs: PredictedCosts
  /// The accuracy proxy (higher is better).
  public var score: Double
}

/// The settings of a search run (kept in the state so a resumed run continues the same search).
public struct EvolutionOptions: Codable, Sendable, Equatable {
  public var seed: UInt64
  /// Architectures alive at once (regularized evolution's population).
  public var populationSize: Int
  /// Parents drawn per tournament.
  public var sampleSize: Int
  /// Children evaluated per generation.
  public var childrenPerGeneration: Int
  public var generations: Int
  /// Drawing or mutating attempts per wanted feasible architecture: after this many misses the initial population
  /// grows by mutations from a feasible architecture instead of random draws, and a child is its parent's copy.
  public var maximumAttempts: Int

  public init(
    seed: UInt64, populationSize: Int = 64, sampleSize: Int = 16, childrenPerGeneration: Int = 64,
    generations: Int = 100, maximumAttempts: Int = 1000
  ) {
    self.seed = seed
    self.populationSize = populationSize
    self.sampleSize = sampleSize
    self.childrenPerGeneration = childrenPerGeneration
    self.generations = generations
    self.maximumAttempts = maximumAttempts
  }

  /// The accepted ranges (also the CLI's): population 2…10 000, sample 1…population,
  /// children 1…100 000, generations 0…100 000, attempts 1…1 000 000.
  public func validate() throws {
    func check(_ value: Int, _ range: ClosedRange<Int>, _ field: String) throws {
      guard range.contains(value) else {
        throw SearchSpaceError(field: field, message: "\(value) is outside the allowed range \(range.lowerBound)...\(range.upperBound)")
      }
    }
    try check(populationSize, 2...10_000, "populationSize")
    try check(sampleSize, 1...populationSize, "sampleSize")
    try check(childrenPerGeneration, 1...100_000, "childrenPerGeneration")
    try check(generations, 0...100_000, "generations")
    try check(maximumAttempts, 1...1_000_000, "maximumAttempts")
  }
}

/// How a search run scored its candidates: the accuracy proxy and the data it read. Kept in the state so a
/// resumed run scores its children exactly as the candidates already in the population were scored.
public struct ProxySettings: Codable, Sendable, Equatable {
  public var proxy: AccuracyProxy
  /// The dataset the naswot mini-batch and the short-training subsets come from.
  public var dataset: String
  /// Images in the naswot mini-batch.
  public var batch: Int
  /// Seed of the naswot mini-batch and the short-training subsets.
  public var seed: UInt64
  /// Short-training subset sizes as requested (nil: the dataset-dependent defaults) and its epochs.
  public var shortTrainingImages: Int?
  public var shortTrainingValidation: Int?
  public var shortTrainingEpochs: Int
  /// The fitted ``AccuracyPredictor`` of the `predictor` proxy (nil for the others), kept whole so that a
  /// resumed search scores with the same one.
  public var predictor: AccuracyPredictor?

  public init(
    proxy: AccuracyProxy, dataset: String, batch: Int, seed: UInt64, shortTrainingImages: Int? = nil,
    shortTrainingValidation: Int? = nil, shortTrainingEpochs: Int = 1, predictor: AccuracyPredictor? = nil
  ) {
    self.predictor = predictor
    self.proxy = proxy
    self.dataset = dataset
    self.batch = batch
    self.seed = seed
    self.shortTrainingImages = shortTrainingImages
    self.shortTrainingValidation = shortTrainingValidation
    self.shortTrainingEpochs = shortTrainingEpochs
  }

  /// The CLI's ranges: dataset name 1…4096 bytes, batch 2…1024, seed ≤ 2⁶³ − 1, subset sizes
  /// 1…1 000 000, epochs 1…100; the predictor proxy's predictor present and well formed.
  public func validate() throws {
    func check(_ value: Int?, _ range: ClosedRange<Int>, _ field: String) throws {
      guard let value else { return }
      guard range.contains(value) else {
        throw SearchSpaceError(
          field: "proxySettings.\(field)", message: "\(value) is outside the allowed range \(range.lowerBound)...\(range.upperBound)")
      }
    }
    try check(dataset.utf8.count, 1...4096, "dataset (length)")
    try check(batch, 2...1024, "batch")
    guard seed <= UInt64(Int.max) else {
      throw SearchSpaceError(field: "proxySettings.seed", message: "\(seed) exceeds 2^63 - 1")
    }
    try check(shortTrainingImages, 1...1_000_000, "shortTrainingImages")
    try check(shortTrainingValidation, 1...1_000_000, "shortTrainingValidation")
    try check(shortTrainingEpochs, 1...100, "shortTrainingEpochs")
    if proxy == .predictor {
      guard let predictor else {
        throw SearchSpaceError(field: "proxySettings.predictor", message: "the predictor proxy's fitted predictor is missing")
      }
      guard predictor.isWellFormed else {
        throw SearchSpaceError(
          field: "proxySettings.predictor", message: "inconsistent sizes, a non-finite number or a non-positive λ or γ")
      }
    }
  }
}

/// Everything a search run needs to continue after being killed: written atomically after each generation.
///
/// Besides the search's own settings it records what its numbers came from — the cost model that priced
/// the candidates and the proxy settings that scored them — so that `--resume` continues the same search
/// rather than mixing scores or costs of two different ones. States written before these were recorded
/// decode them as nil.
public struct EvolutionState: Codable, Sendable, Equatable {
  public static let formatVersion = 1
  public var formatVersion: Int
  public var space: SearchSpace
  public var constraints: SearchConstraints
  public var options: EvolutionOptions
  /// The cost model every candidate's predicted costs came from (nil in states of older versions).
  public var costModel: CostModel?
  /// Whether ``costModel`` was measured on this machine (a profile) rather than the analytic model.
  public var costsAreMeasured: Bool?
  /// How the candidates were scored (nil in states of older versions).
  public var proxySettings: ProxySettings?
  public var generation: Int
  public var generator: RandomGenerator
  /// Oldest first; the oldest dies when a child is added (regularized evolution).
  public var population: [Candidate]
  /// Non-dominated candidates seen so far: maximal score, minimal training time, minimal training memory.
  public var front: [Candidate]
  public var evaluated: Int
  public var rejected: Int

  /// The best-scoring candidate on the front (ties: faster training first).
  public var best: Candidate? {
    front.max { ($0.score, -$0.costs.trainMillisecondsPerImage) < ($1.score, -$1.costs.trainMillisecondsPerImage) }
  }
}

/// Constrained regularized evolution (Real et al. 2019) over predicted costs and an accuracy proxy,
/// with a Pareto archive (proxy vs training time vs training memory).
///
/// Each child is a tournament winner (best proxy among `sampleSize` random members) mutated in one
/// gene; children that break a constraint are redrawn *before* the proxy is computed, so the proxy is
/// only ever paid for feasible architectures. Everything random comes from one seeded
/// ``QuadraCore/RandomGenerator`` stored in the state, so a run is deterministic for its seed and a
/// resumed run continues exactly as the uninterrupted one would.
public struct Evolution: Sendable {
  public var costModel: CostModel
  /// The accuracy proxy (higher is better); called only for feasible architectures.
  public var score: @Sendable (Architecture, ModelConfig) throws -> Double

  /// How candidates' memory is predicted while scoring. The default, the closed-form upper bound, keeps
  /// scoring at microseconds per candidate (10,000 candidates well within a minute); a memory constraint
  /// checked with it never admits an architecture whose exact peak exceeds the limit. Results that are
  /// written out (Pareto front, best) carry the exact peaks (``CostModel/predict(_:resolution:latency:memory:)``).
  ///
  /// With the bound alone, a memory limit would also turn away every architecture whose bound (1.2–1.9× the
  /// exact peak) exceeds it while its exact peak does not: under `--memory-below quadranet-28 1` that was
  /// quadranet-28 itself and everything near its cost, so the search could only return networks far
  /// cheaper than the budget. So a candidate that only a memory limit rejects is judged again by its exact
  /// peak (a meta execution: milliseconds to tenths of a second, cached per architecture in ``exactPeaks``);
  /// the bound still admits, without a replay, everything it proves feasible.
  public var memoryEstimate: MemoryEstimate

  /// Exact-peak predictions made while scoring, by architecture (shared by copies of this evolution).
  let exactPeaks = ExactPeakCache()

  public init(
    costModel: CostModel, memoryEstimate: MemoryEstimate = .upperBound,
    score: @escaping @Sendable (Architecture, ModelConfig) throws -> Double
  ) {
    self.costModel = costModel
    self.memoryEstimate = memoryEstimate
    self.score = score
  }

  /// The costs a candidate is judged by: ``memoryEstimate``'s, or the exact peaks when the bound is all
  /// that a memory limit rejects.
  func judgedCosts(
    _ architecture: Architecture, _ config: ModelConfig, resolution: Int, constraints: SearchConstraints
  ) throws -> PredictedCosts {
    let costs = try costModel.predict(config, resolution: resolution, memory: memoryEstimate)
    guard memoryEstimate == .upperBound, !constraints.admits(costs), constraints.admitsApartFromMemory(costs) else {
      return costs
    }
    if let cached = exactPeaks[architecture] { return cached }
    let exact = try costModel.predict(config, resolution: resolution, memory: .exact)
    exactPeaks[architecture] = exact
    return exact
  }

  /// Throws ``InfeasibleBudgetError`` when some constraint is below its cheapest value in the space
  /// (found per constraint by coordinate descent over the genes from the smallest choices: the costs
  /// grow with depth, width and MLP ratio, so the smallest ones are cheapest and only the mixer, stem
  /// and stage count need trying).
  public func checkFeasible(space: SearchSpace, constraints: SearchConstraints) throws {
    for bound in constraints.bounds {
      var (architecture, value) = try cheapest(space: space) { bound.value($0) }
      if value > bound.limit && bound.isMemory && memoryEstimate != .exact {
        // The bound overstates memory: judge the cheapest architecture by its exact peak before refusing.
        value = bound.value(try costModel.predict(try space.config(for: architecture), resolution: space.resolution))
      }
      if value > bound.limit {
        throw InfeasibleBudgetError(
          flag: bound.flag, limit: bound.limit, cheapest: architecture, cheapestValue: value, unit: bound.unit)
      }
    }
  }

  func cheapest(space: SearchSpace, metric: (PredictedCosts) -> Double) throws -> (Architecture, Double) {
    var best: (Architecture, Double)?
    for count in space.stageCounts {
      for stem in space.stems {
        var architecture = Architecture(
          stem: stem, depths: space.stages.prefix(count).map { $0.depths.min()! },
          widths: space.stages.prefix(count).map { $0.widths.min()! }, mixers: [], mlpRatio: space.mlpRatios.min()!)
        architecture.mixers = (0..<count).map {
          SearchSpace.compatibleMixers(space.stages[$0].mixers, width: architecture.widths[$0])[0]
        }
        // Per stage, the mixer (and, for gnConv, any width it allows) that costs least with the rest fixed.
        for stage in 0..<count {
          var stageBest: (TokenMixer, Int, Double)?
          for width in space.stages[stage].widths.sorted() {
            for mixer in SearchSpace.compatibleMixers(space.stages[stage].mixers, width: width) {
              var trial = architecture
              trial.widths[stage] = width
              trial.mixers[stage] = mixer
              let value = metric(try costModel.predict(try space.config(for: trial), resolution: space.resolution, memory: memoryEstimate))
              if stageBest.map({ value < $0.2 }) ?? true { stageBest = (mixer, width, value) }
            }
          }
          if let stageBest {
            architecture.mixers[stage] = stageBest.0
            architecture.widths[stage] = stageBest.1
          }
        }
        let value = metric(try costModel.predict(try space.config(for: architecture), resolution: space.resolution, memory: memoryEstimate))
        if best.map({ value < $0.1 }) ?? true { best = (architecture, value) }
      }
    }
    return best!
  }

  /// The initial state: `populationSize` random feasible architectures (after ``checkFeasible(space:constraints:)``;
  /// where random draws miss `maximumAttempts` times in a row, the rest grow by mutation from a feasible one,
  /// see ``feasibleSeed(_:)``).
  /// The state records this evolution's ``costModel``, whether it is `costsAreMeasured`, and `proxySettings` (what
  /// ``score`` computes), so a resumed run can be held to the same ones.
  ///
  /// `onMutationFallback` is told the architecture the population grows from when random draws miss (the CLI
  /// prints it: such a population is less varied than a drawn one).
  public func start(
    space: SearchSpace, constraints: SearchConstraints, options: EvolutionOptions, proxySettings: ProxySettings? = nil,
    costsAreMeasured: Bool? = nil, onMutationFallback: (Architecture) -> Void = { _ in }
  ) throws -> EvolutionState {
    try options.validate()
    try space.validate()
    try checkFeasible(space: space, constraints: constraints)
    var state = EvolutionState(
      formatVersion: EvolutionState.formatVersion, space: space, constraints: constraints, options: options,
      costModel: costModel, costsAreMeasured: costsAreMeasured, proxySettings: proxySettings,
      generation: 0, generator: RandomGenerator(seed: options.seed), population: [], front: [], evaluated: 0,
      rejected: 0)
    // Random draws first. Where the limits together admit only a sliver of the space (each one alone being
    // met by the cheapest architectures), draws can keep missing: then the population grows from one
    // feasible architecture by mutations of its members instead (a member copied where every mutation of it
    // breaks a limit). Runs whose draws succeed never reach this, so their results do not change.
    var drawing = true
    while state.population.count < options.populationSize {
      if drawing {
        if let candidate = try feasibleCandidate(&state, draw: { space.randomArchitecture(using: &$0) }) {
          state.population.append(candidate)
          continue
        }
        drawing = false
        if state.population.isEmpty { state.population.append(try feasibleSeed(&state)) }
        onMutationFallback(state.population[0].architecture)
        continue
      }
      let parent = state.population[Int(state.generator.next() % UInt64(state.population.count))]
      state.population.append(try feasibleCandidate(&state) { space.mutate(parent.architecture, using: &$0) } ?? parent)
    }
    return state
  }

  /// A feasible architecture when random draws found none: the cheapest one for each limit, or the one a
  /// coordinate descent from the smallest choices finds closest to all limits (the largest ratio of value to
  /// limit smallest); throws ``JointlyInfeasibleBudgetError`` naming that one when none meets them all.
  func feasibleSeed(_ state: inout EvolutionState) throws -> Candidate {
    let space = state.space, constraints = state.constraints, bounds = constraints.bounds
    func worstRatio(_ costs: PredictedCosts) -> Double {
      bounds.map { $0.value(costs) / Swift.max($0.limit, .leastNormalMagnitude) }.max() ?? 0
    }
    let closest = try cheapest(space: space, metric: worstRatio).0
    var trials = [closest]
    for bound in bounds { trials.append(try cheapest(space: space) { bound.value($0) }.0) }
    var closestCosts: PredictedCosts?
    for architecture in trials {
      let config = try space.config(for: architecture)
      let costs = try judgedCosts(architecture, config, resolution: space.resolution, constraints: constraints)
      if closestCosts == nil { closestCosts = costs }
      guard constraints.admits(costs) else { continue }
      let candidate = Candidate(architecture: architecture, costs: costs, score: try score(architecture, config))
      state.evaluated += 1
      Self.insert(candidate, into: &state.front)
      return candidate
    }
    let costs = closestCosts!
    throw JointlyInfeasibleBudgetError(
      limits: bounds.map { ($0.flag, $0.limit, $0.value(costs), $0.unit) }, closest: closest,
      attempts: state.options.maximumAttempts)
  }

  /// Runs generations until `state.options.generations`, calling `checkpoint` after each one (write
  /// the state there; a kill between checkpoints loses at most one generation).
  public func run(_ state: inout EvolutionState, checkpoint: (EvolutionState) throws -> Void = { _ in }) throws {
    while state.generation < state.options.generations {
      for _ in 0..<state.options.childrenPerGeneration {
        let parent = tournament(&state)
        let space = state.space
        // A parent none of whose mutations meets the limits (it sits alone in a sliver of the space) lives on as
        // its own child.
        let child = try feasibleCandidate(&state) { space.mutate(parent.architecture, using: &$0) } ?? parent
        state.population.append(child)
        state.population.removeFirst()
      }
      state.generation += 1
      try checkpoint(state)
    }
  }

  func tournament(_ state: inout EvolutionState) -> Candidate {
    var best: Candidate?
    for _ in 0..<state.options.sampleSize {
      let member = state.population[Int(state.generator.next() % UInt64(state.population.count))]
      if best.map({ member.score > $0.score }) ?? true { best = member }
    }
    return best!
  }

  /// The first of up to `maximumAttempts` drawn architectures that meets the limits, scored and added to the
  /// front; nil when none did.
  func feasibleCandidate(
    _ state: inout EvolutionState, draw: (inout RandomGenerator) -> Architecture
  ) throws -> Candidate? {
    for _ in 0..<state.options.maximumAttempts {
      let architecture = draw(&state.generator)
      let config = try state.space.config(for: architecture)
      let costs = try judgedCosts(architecture, config, resolution: state.space.resolution, constraints: state.constraints)
      guard state.constraints.admits(costs) else {
        state.rejected += 1
        continue
      }
      let candidate = Candidate(architecture: architecture, costs: costs, score: try score(architecture, config))
      state.evaluated += 1
      Self.insert(candidate, into: &state.front)
      return candidate
    }
    return nil
  }

  /// Adds `candidate` to the Pareto front unless dominated; removes those it dominates.
  static func insert(_ candidate: Candidate, into front: inout [Candidate]) {
    func dominates(_ a: Candidate, _ b: Candidate) -> Bool {
      let noWorse = a.score >= b.score && a.costs.trainMillisecondsPerImage <= b.costs.trainMillisecondsPerImage
        && a.costs.trainMemoryBytes <= b.costs.trainMemoryBytes
      let better = a.score > b.score || a.costs.trainMillisecondsPerImage < b.costs.trainMillisecondsPerImage
        || a.costs.trainMemoryBytes < b.costs.trainMemoryBytes
      return noWorse && better
    }
    guard !front.contains(where: { dominates($0, candidate) || $0.architecture == candidate.architecture }) else { return }
    front.removeAll { dominates(candidate, $0) }
    front.append(candidate)
  }

  /// Reads a state written by ``save(_:to:)``; errors name the file.
  public static func load(from url: URL) throws -> EvolutionState {
    let data: Data
    do { data = try BoundedFile.read(url, maximumBytes: 64 << 20) } catch {
      throw SearchSpaceError(field: "", message: "\(url.path): cannot read the search state (\(error.localizedDescription))")
    }
    let state: EvolutionState
    do {
      state = try StrictJSON.decode(EvolutionState.self, from: data, limits: StrictJSON.Limits(maximumBytes: 64 << 20))
    } catch let error as JSONInputError {
      throw SearchSpaceError(field: error.path, message: "\(url.path): \(error.message)")
    }
    guard state.formatVersion == EvolutionState.formatVersion else {
      throw SearchSpaceError(field: "formatVersion", message: "\(url.path): version \(state.formatVersion), expected \(EvolutionState.formatVersion)")
    }
    try state.space.validate()
    try state.options.validate()
    if let costModel = state.costModel, !costModel.isWellFormed {
      throw SearchSpaceError(field: "costModel", message: "\(url.path): the recorded cost model is malformed")
    }
    try state.proxySettings?.validate()
    guard state.population.count == state.options.populationSize, state.generator.state.count == RandomGenerator(seed: 0).state.count else {
      throw SearchSpaceError(field: "population", message: "\(url.path): the state is inconsistent (population or generator size)")
    }
    return state
  }

  /// Writes `state` atomically (temporary file + rename), so a kill leaves the previous or the new one.
  public static func save(_ state: EvolutionState, to url: URL) throws {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.sortedKeys]
    try AtomicFile.write(try encoder.encode(state), to: url)
  }
}

/// Exact-peak costs by architecture, filled while an ``Evolution`` scores (a search revisits architectures:
/// tournament winners are mutated one gene at a time, often back to an architecture seen before).
final class ExactPeakCache: Sendable {
  private let costs = Mutex<[Architecture: PredictedCosts]>([:])

  subscript(architecture: Architecture) -> PredictedCosts? {
    get { costs.withLock { $0[architecture] } }
    set { costs.withLock { $0[architecture] = newValue } }
  }
}
