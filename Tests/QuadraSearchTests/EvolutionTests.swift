import Foundation
import QuadraModels
import Testing

@testable import QuadraSearch

@Suite struct EvolutionTests {
  /// A synthetic objective: prefers deep, wide, quadratic stages; cheap to compute.
  static func syntheticScore(_ architecture: Architecture, _ config: ModelConfig) -> Double {
    zip(architecture.depths, architecture.widths).reduce(0.0) { $0 + Double($1.0) * log(Double($1.1)) }
      + Double(architecture.mixers.filter { $0.caseName == "quadratic" }.count)
  }

  static let evolution = Evolution(
    costModel: .analytic(batchSize: 32, threads: 1), score: EvolutionTests.syntheticScore)
  static let options = EvolutionOptions(seed: 42, populationSize: 16, sampleSize: 4, childrenPerGeneration: 8, generations: 6)

  @Test func runIsDeterministicForASeedAndRespectsConstraints() throws {
    let space = SearchSpace.fashionMNIST
    // A budget around the median architecture's training memory.
    let constraints = SearchConstraints(maxTrainMemoryBytes: 48 << 20, maxParameters: 400_000)
    var first = try Self.evolution.start(space: space, constraints: constraints, options: Self.options)
    try Self.evolution.run(&first)
    var second = try Self.evolution.start(space: space, constraints: constraints, options: Self.options)
    try Self.evolution.run(&second)
    #expect(first == second)
    #expect(first.generation == 6)
    #expect(first.evaluated == 16 + 6 * 8)
    #expect(first.rejected > 0)
    for candidate in first.population + first.front {
      #expect(candidate.costs.trainMemoryBytes <= 48 << 20)
      #expect(candidate.costs.parameters <= 400_000)
    }
    var other = try Self.evolution.start(
      space: space, constraints: constraints, options: EvolutionOptions(seed: 43, populationSize: 16, sampleSize: 4, childrenPerGeneration: 8, generations: 6))
    try Self.evolution.run(&other)
    #expect(other.population != first.population)
    // Evolution improves on the random start: selection raises the population's mean score (aging may
    // retire the best member, so the population's maximum need not rise), and the front keeps the best seen.
    let start = try Self.evolution.start(space: space, constraints: constraints, options: Self.options)
    func mean(_ candidates: [Candidate]) -> Double { candidates.map(\.score).reduce(0, +) / Double(candidates.count) }
    #expect(mean(first.population) > mean(start.population))
    #expect(first.front.map(\.score).max()! >= start.population.map(\.score).max()!)
    // No front member dominates another.
    for a in first.front {
      for b in first.front where a != b {
        #expect(!(a.score >= b.score && a.costs.trainMillisecondsPerImage <= b.costs.trainMillisecondsPerImage
          && a.costs.trainMemoryBytes <= b.costs.trainMemoryBytes))
      }
    }
  }

  /// A run killed after generation 2 and resumed from its last written state ends identical to an
  /// uninterrupted run.
  @Test func resumedRunEqualsUninterruptedRun() throws {
    let directory = FileManager.default.temporaryDirectory.appendingPathComponent("search-resume-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(at: directory) }
    let url = directory.appendingPathComponent("state.json")
    struct Killed: Error {}
    var interrupted = try Self.evolution.start(space: .fashionMNIST, constraints: SearchConstraints(), options: Self.options)
    #expect(throws: Killed.self) {
      try Self.evolution.run(&interrupted) { state in
        try Evolution.save(state, to: url)
        if state.generation == 2 { throw Killed() }
      }
    }
    var resumed = try Evolution.load(from: url)
    #expect(resumed.generation == 2)
    try Self.evolution.run(&resumed)
    var uninterrupted = try Self.evolution.start(space: .fashionMNIST, constraints: SearchConstraints(), options: Self.options)
    try Self.evolution.run(&uninterrupted)
    #expect(resumed == uninterrupted)
  }

  /// The state records the cost model and the proxy settings; a state of an older version (without them)
  /// still loads, with both nil.
  @Test func stateRecordsItsCostModelAndProxySettings() throws {
    let url = FileManager.default.temporaryDirectory.appendingPathComponent("search-settings-\(UUID().uuidString).json")
    defer { try? FileManager.default.removeItem(at: url) }
    let settings = ProxySettings(
      proxy: .shortTraining, dataset: "fashion-mnist", batch: 32, seed: 7, shortTrainingImages: 5000,
      shortTrainingEpochs: 2)
    let state = try Self.evolution.start(
      space: .fashionMNIST, constraints: SearchConstraints(maxParameters: 400_000), options: Self.options,
      proxySettings: settings, costsAreMeasured: false)
    #expect(state.costModel == Self.evolution.costModel)
    try Evolution.save(state, to: url)
    let loaded = try Evolution.load(from: url)
    #expect(loaded == state)
    #expect(loaded.proxySettings == settings)
    #expect(loaded.costsAreMeasured == false)

    var object = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: url)) as? [String: Any])
    for key in ["costModel", "costsAreMeasured", "proxySettings"] { #expect(object.removeValue(forKey: key) != nil) }
    try JSONSerialization.data(withJSONObject: object).write(to: url)
    let older = try Evolution.load(from: url)
    #expect(older.costModel == nil && older.proxySettings == nil && older.costsAreMeasured == nil)
    #expect(older.population == state.population && older.options == state.options)
  }

  /// Recorded settings outside the CLI's ranges, or a cost model with a negative coefficient, are errors
  /// naming the field.
  @Test func malformedRecordedSettingsAreRejectedNamingTheField() throws {
    let url = FileManager.default.temporaryDirectory.appendingPathComponent("search-bad-settings-\(UUID().uuidString).json")
    defer { try? FileManager.default.removeItem(at: url) }
    let good = try Self.evolution.start(
      space: .fashionMNIST, constraints: SearchConstraints(), options: Self.options,
      proxySettings: ProxySettings(proxy: .naswot, dataset: "digits", batch: 64, seed: 0), costsAreMeasured: true)
    func expectRejected(_ field: String, _ change: (inout EvolutionState) -> Void) throws {
      var state = good
      change(&state)
      try Evolution.save(state, to: url)
      do {
        _ = try Evolution.load(from: url)
        Issue.record("accepted a state with a bad \(field)")
      } catch let error as SearchSpaceError {
        #expect(error.field == field, "\(error)")
      }
    }
    try expectRejected("proxySettings.batch") { $0.proxySettings?.batch = 1 }
    try expectRejected("proxySettings.shortTrainingEpochs") { $0.proxySettings?.shortTrainingEpochs = 101 }
    try expectRejected("proxySettings.shortTrainingImages") { $0.proxySettings?.shortTrainingImages = 0 }
    try expectRejected("proxySettings.seed") { $0.proxySettings?.seed = .max }
    try expectRejected("costModel") { $0.costModel?.trainPerImage.coefficients[0] = -1 }
    try expectRejected("costModel") { $0.costModel?.threads = 0 }
    try expectRejected("costModel") { $0.costModel?.inferBatch1.coefficients.removeLast() }
  }

  @Test func corruptStateIsRejectedNamingTheFile() throws {
    let url = FileManager.default.temporaryDirectory.appendingPathComponent("search-corrupt-\(UUID().uuidString).json")
    defer { try? FileManager.default.removeItem(at: url) }
    try Data("{\"formatVersion\": 1".utf8).write(to: url)
    do {
      _ = try Evolution.load(from: url)
      Issue.record("accepted a truncated state")
    } catch let error as SearchSpaceError {
      #expect(error.message.contains(url.path))
    }
  }

  @Test func infeasibleBudgetIsRejectedQuicklyNamingTheCheapestArchitecture() throws {
    let clock = ContinuousClock()
    var thrown: InfeasibleBudgetError?
    let elapsed = clock.measure {
      do {
        _ = try Self.evolution.start(space: .fashionMNIST, constraints: SearchConstraints(maxParameters: 1000), options: Self.options)
      } catch let error as InfeasibleBudgetError {
        thrown = error
      } catch {
        Issue.record("unexpected \(error)")
      }
    }
    let error = try #require(thrown)
    #expect(elapsed < .seconds(1))
    #expect(error.flag == "--max-params")
    #expect(error.description.contains(error.cheapest.name))
    // The named architecture is the smallest the space has.
    let space = SearchSpace.fashionMNIST
    #expect(error.cheapest.depths == [1, 1] && error.cheapest.widths == [24, 48] && error.cheapest.mlpRatio == 2)
    #expect(Int(error.cheapestValue) == (try space.config(for: error.cheapest)).parameterCount)
    var generator = RandomGenerator(seed: 5)
    for _ in 0..<500 {
      #expect((try space.config(for: space.randomArchitecture(using: &generator))).parameterCount >= Int(error.cheapestValue))
    }
  }

  /// Limits that each admit the cheapest architectures but together only a sliver of the space: random draws
  /// miss (here after 3 attempts), so the population grows by mutation from a feasible architecture; every
  /// member meets the limits, the run goes on, and it stays deterministic. (Before, such a budget stopped the
  /// search with "no feasible architecture in 1000 attempts" although the space had feasible architectures.)
  @Test func aTightJointBudgetGrowsThePopulationFromAFeasibleArchitecture() throws {
    let space = SearchSpace.fashionMNIST
    let model = Self.evolution.costModel
    let smallest = Architecture(
      stem: space.stems[0], depths: [1, 1], widths: [24, 48],
      mixers: [TokenMixer](repeating: .depthwise(kernelSize: 3), count: 2), mlpRatio: 2)
    let costs = try model.predict(try space.config(for: smallest), resolution: space.resolution, memory: .exact)
    let constraints = SearchConstraints(
      maxTrainMemoryBytes: costs.trainMemoryBytes + costs.trainMemoryBytes / 10,
      maxParameters: costs.parameters + costs.parameters / 2)
    // A seed whose first 3 random draws all miss, so the very first member needs the fallback (the start
    // draws from a generator seeded with the options' seed, as here).
    func firstDrawsMiss(_ seed: UInt64) throws -> Bool {
      var generator = RandomGenerator(seed: seed)
      for _ in 0..<3 {
        let architecture = space.randomArchitecture(using: &generator)
        let drawn = try model.predict(try space.config(for: architecture), resolution: space.resolution, memory: .exact)
        if constraints.admits(drawn) { return false }
      }
      return true
    }
    let seed = try #require(try (UInt64(1)...50).first { try firstDrawsMiss($0) })
    let options = EvolutionOptions(
      seed: seed, populationSize: 12, sampleSize: 3, childrenPerGeneration: 6, generations: 4, maximumAttempts: 3)
    var fallbackSeeds: [Architecture] = []
    var first = try Self.evolution.start(space: space, constraints: constraints, options: options) { fallbackSeeds.append($0) }
    #expect(first.population.count == 12)
    #expect(fallbackSeeds == [first.population[0].architecture])
    try Self.evolution.run(&first)
    #expect(first.generation == 4)
    for candidate in first.population + first.front {
      #expect(candidate.costs.trainMemoryBytes <= constraints.maxTrainMemoryBytes!)
      #expect(candidate.costs.parameters <= constraints.maxParameters!)
    }
    // More than one architecture: the mutations explore the sliver rather than copying the seed.
    #expect(Set(first.population.map(\.architecture)).count > 1)
    var second = try Self.evolution.start(space: space, constraints: constraints, options: options)
    try Self.evolution.run(&second)
    #expect(first == second)
  }

  /// When not even the closest architecture the seed's descent finds meets the limits, the error names it and
  /// its value for each limit.
  @Test func aJointlyInfeasibleBudgetNamesTheClosestArchitecture() throws {
    let space = SearchSpace.fashionMNIST
    let constraints = SearchConstraints(maxTrainMemoryBytes: 1 << 20, maxParameters: 1000)
    var state = EvolutionState(
      formatVersion: EvolutionState.formatVersion, space: space, constraints: constraints, options: Self.options,
      costModel: Self.evolution.costModel, costsAreMeasured: false, proxySettings: nil, generation: 0,
      generator: RandomGenerator(seed: 1), population: [], front: [], evaluated: 0, rejected: 0)
    var thrown: JointlyInfeasibleBudgetError?
    do { _ = try Self.evolution.feasibleSeed(&state) } catch let error as JointlyInfeasibleBudgetError { thrown = error }
    let error = try #require(thrown)
    #expect(error.limits.map(\.flag) == ["--max-train-memory-mb", "--max-params"])
    #expect(error.limits.allSatisfy { $0.value > $0.limit })
    #expect(error.description.contains(error.closest.name) && error.description.contains("--max-params 1000"))
    let parameters = try space.config(for: error.closest).parameterCount
    #expect(error.limits[1].value == Double(parameters))
  }

  /// A memory limit between an architecture's exact peak and its closed-form bound: the bound alone
  /// would reject it; the evolution judges it by the exact peak and admits it (and caches that peak),
  /// while a limit one byte below the exact peak still rejects it. Without this, `--memory-below
  /// quadranet-28 1` turned away quadranet-28 itself.
  @Test func candidatesRejectedOnlyByTheMemoryBoundAreJudgedByTheExactPeak() throws {
    let space = SearchSpace.fashionMNIST
    let architecture = Architecture(
      stem: space.stems[0], depths: [2, 3, 2], widths: [40, 80, 160],
      mixers: [TokenMixer](repeating: .quadratic(kernelSize: 3), count: 3), mlpRatio: 2)
    let config = try space.config(for: architecture)
    let model = Self.evolution.costModel
    let exact = try model.predict(config, resolution: space.resolution, memory: .exact).trainMemoryBytes
    let bound = try model.predict(config, resolution: space.resolution, memory: .upperBound).trainMemoryBytes
    #expect(bound > exact)
    let evolution = Evolution(costModel: model, score: Self.syntheticScore)
    let admitting = SearchConstraints(maxTrainMemoryBytes: exact)
    let judged = try evolution.judgedCosts(architecture, config, resolution: space.resolution, constraints: admitting)
    #expect(judged.trainMemoryBytes == exact && admitting.admits(judged))
    #expect(evolution.exactPeaks[architecture]?.trainMemoryBytes == exact)
    let rejecting = SearchConstraints(maxTrainMemoryBytes: exact - 1)
    let fresh = Evolution(costModel: model, score: Self.syntheticScore)
    #expect(!rejecting.admits(try fresh.judgedCosts(architecture, config, resolution: space.resolution, constraints: rejecting)))
    // A limit the bound already meets needs no replay; one a non-memory limit breaks gets none either.
    let loose = SearchConstraints(maxTrainMemoryBytes: bound)
    _ = try fresh.judgedCosts(architecture, config, resolution: space.resolution, constraints: loose)
    let tooManyParameters = SearchConstraints(maxTrainMemoryBytes: exact, maxParameters: 1000)
    let other = Evolution(costModel: model, score: Self.syntheticScore)
    let unrefined = try other.judgedCosts(architecture, config, resolution: space.resolution, constraints: tooManyParameters)
    #expect(unrefined.trainMemoryBytes == bound && other.exactPeaks[architecture] == nil)
    // A whole run under the exact peak of this architecture admits architectures the bound would refuse.
    var state = try evolution.start(space: space, constraints: admitting, options: Self.options)
    try evolution.run(&state)
    #expect((state.population + state.front).allSatisfy { $0.costs.trainMemoryBytes <= exact })
    #expect((state.population + state.front).contains { candidate in
      let config = try! space.config(for: candidate.architecture)
      return MemoryModel.upperBound(config: config, batchSize: model.batchSize, resolution: space.resolution).trainingBytes > exact
    })
  }

  @Test func scoringTenThousandCandidatesTakesUnderAMinute() throws {
    let clock = ContinuousClock()
    let options = EvolutionOptions(seed: 1, populationSize: 100, sampleSize: 10, childrenPerGeneration: 100, generations: 99)
    var state = try Self.evolution.start(space: .fashionMNIST, constraints: SearchConstraints(), options: options)
    let elapsed = try clock.measure { try Self.evolution.run(&state) }
    #expect(state.evaluated == 10_000)
    print("scored 10000 candidates in \(elapsed)")
    #expect(elapsed < .seconds(60))
  }
}
