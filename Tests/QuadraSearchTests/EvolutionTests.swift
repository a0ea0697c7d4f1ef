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
    // Evolution improves on the random start.
    let start = try Self.evolution.start(space: space, constraints: constraints, options: Self.options)
    #expect(first.population.map(\.score).max()! >= start.population.map(\.score).max()!)
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
