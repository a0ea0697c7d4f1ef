import Foundation
import QuadraModels
import QuadraTraining
import Testing

@testable import QuadraSearch

@Suite struct SearchSpaceTests {
  @Test func builtInSpacesAreValidAndEveryDrawnArchitectureBuilds() throws {
    for space in SearchSpace.builtIn.values {
      try space.validate()
      var generator = RandomGenerator(seed: 7)
      var mixersSeen = Set<String>()
      var hybrids = 0
      for _ in 0..<300 {
        let architecture = space.randomArchitecture(using: &generator)
        let config = try space.config(for: architecture)
        #expect(try space.architecture(of: config) == architecture)
        mixersSeen.formUnion(architecture.mixers.map(\.caseName))
        if Set(architecture.mixers.map(\.caseName)).count > 1 { hybrids += 1 }
        let child = space.mutate(architecture, using: &generator)
        _ = try space.config(for: child)
      }
      let listed = Set(space.stages.flatMap { $0.mixers.map(\.caseName) })
      #expect(mixersSeen == listed)
      #expect(space.name == "fashion-mnist-full-resolution" || listed == ["quadratic", "gnConv", "depthwise"])
      #expect(hybrids > 0 || listed.count == 1)
    }
  }

  @Test func registeredSmallModelsLieInTheFashionMNISTSpace() throws {
    for name in ["quadranet-28", "convnext-28"] {
      let registered = try ModelRegistry.config(named: name)
      var config = registered
      config.name = "x"
      let architecture = try SearchSpace.fashionMNIST.architecture(of: config)
      let rebuilt = try SearchSpace.fashionMNIST.config(for: architecture, name: registered.name)
      #expect(rebuilt == registered)
    }
  }

  /// The space file and the searched network of the README's stop-32 demonstration stay loadable, the file equals
  /// the built-in space, and the network lies in it (it was found there).
  @Test func committedSpaceFileAndSearchedNetworkLoad() throws {
    let data = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
      .deletingLastPathComponent().appendingPathComponent("data")
    let space = try SearchSpace.load(nameOrPath: data.appendingPathComponent("search-spaces/fashion-mnist-full-resolution.json").path)
    // The file is the built-in space written out (`--space fashion-mnist-full-resolution` searches the same).
    #expect(space == SearchSpace.fashionMNISTFullResolution)
    let config = try ModelConfig.decodeJSON(
      try Data(contentsOf: data.appendingPathComponent("searched/q3-q3-q3-q3_1x16-1x40-1x80-1x160_r2_s1k3.json")))
    let architecture = try space.architecture(of: config)
    #expect(architecture.name == config.name)
    #expect(try space.config(for: architecture, name: config.name) == config)
  }

  @Test func configOutsideTheSpaceNamesTheField() throws {
    var config = try ModelRegistry.config(named: "quadranet-28")
    config.widths[1] = 81
    #expect(throws: SearchSpaceError.self) { try SearchSpace.fashionMNIST.architecture(of: config) }
    do { _ = try SearchSpace.fashionMNIST.architecture(of: config) } catch let error as SearchSpaceError {
      #expect(error.field == "widths[1]")
    }
  }

  /// Each kind of bad space file fails with the offending field named.
  @Test(arguments: [
    (#""resolution": 28"#, #""resolution": 0"#, "resolution"),
    (#""stageCounts": [2, 3]"#, #""stageCounts": [4]"#, "stageCounts[0]"),
    (#""stageCounts": [2, 3]"#, #""stageCounts": []"#, "stageCounts"),
    (#""mlpRatios": [2, 3, 4]"#, #""mlpRatios": [2, 17]"#, "mlpRatios[1]"),
    (#""depths": [1, 2, 3]"#, #""depths": [1, 65, 3]"#, "stages[0].depths[1]"),
    (#""widths": [24, 32, 40, 48, 64]"#, #""widths": [24, 0]"#, "stages[0].widths[1]"),
    (#"{"quadratic":{"kernelSize":3}}"#, #"{"quadratic":{"kernelSize":4}}"#, "stages[0].mixers[0]"),
    (#""kernelSize": 4, "patchSize": 2"#, #""kernelSize": 1, "patchSize": 2"#, "stems[1].kernelSize"),
    (#""patchSize": 2}"#, #""patchSize": 20}"#, "stems[0].patchSize"),
    (#""classCount": 10"#, #""classCount": "ten""#, "classCount"),
    (#""classCount": 10"#, #""classCount": 10, "classCount": 11"#, ""),
    (#""name": "fashion-mnist","#, "", ""),
  ])
  func badSpaceFileNamesTheField(original: String, replacement: String, field: String) throws {
    let json = try Self.fashionMNISTJSON()
    #expect(json.contains(original))
    let broken = json.replacingOccurrences(of: original, with: replacement)
    do {
      _ = try SearchSpace.decode(Data(broken.utf8), source: "space.json")
      Issue.record("accepted \(replacement)")
    } catch let error as SearchSpaceError {
      #expect(error.field == field, "\(error)")
      if field.isEmpty { #expect(error.message.contains("name") || error.message.contains("classCount")) }
    }
  }

  @Test func gnConvOnlyWidthWithoutAFittingOrderIsRejected() throws {
    var space = SearchSpace.fashionMNIST
    space.stages[0].mixers = [.gnConv(order: 4, scale: 1)]
    space.stages[0].widths = [24, 36]
    #expect(throws: SearchSpaceError(field: "stages[0].widths[1]", message: "36 is not divisible by 2^(order−1) for any gnConv order listed, and no other mixer is")) {
      try space.validate()
    }
  }

  @Test func spaceRoundTripsThroughJSONAndFiles() throws {
    let data = try JSONEncoder().encode(SearchSpace.imageNet)
    #expect(try SearchSpace.decode(data) == SearchSpace.imageNet)
    #expect(try SearchSpace.load(nameOrPath: "fashion-mnist") == SearchSpace.fashionMNIST)
    #expect(throws: SearchSpaceError.self) { try SearchSpace.load(nameOrPath: "/nonexistent/space.json") }
  }

  static func fashionMNISTJSON() throws -> String {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.sortedKeys]
    // Spaces after colons and commas make the replacements above readable.
    var text = String(decoding: try encoder.encode(SearchSpace.fashionMNIST), as: UTF8.self)
    text = text.replacingOccurrences(of: ":", with: ": ").replacingOccurrences(of: ",", with: ", ")
    text = text.replacingOccurrences(of: #"{"quadratic": {"kernelSize": 3}}"#, with: #"{"quadratic":{"kernelSize":3}}"#)
    return text
  }
}
