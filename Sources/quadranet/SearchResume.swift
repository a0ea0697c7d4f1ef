import Foundation
import ArgumentParser
import QuadraSearch

/// `search run --resume`: the state records the search's settings, the cost model that priced its candidates
/// and the proxy settings that scored them. Continuing with other ones would mix two searches' numbers in one
/// population and Pareto front, so the recorded values replace the defaults and a flag given now must agree
/// with them. Only `--generations` may change (the new total: a search resumed with more generations ends
/// exactly where an uninterrupted one of that length would).
extension SearchRunCommand {
  mutating func adopt(_ state: inout EvolutionState) throws {
    var conflicts: [String] = []
    if let out, let resume, URL(fileURLWithPath: out).standardizedFileURL != URL(fileURLWithPath: resume).standardizedFileURL {
      conflicts.append("--out \(out.prefix(200)): a resumed search writes into its --resume directory")
    }
    func check<Value: Equatable>(_ flag: String, _ requested: Value?, _ recorded: Value) {
      if let requested, requested != recorded { conflicts.append("\(flag): recorded \(recorded), requested \(requested)") }
    }
    if cost.requestedSpace != nil, try cost.loadSpace() != state.space {
      conflicts.append("--space: recorded \(state.space.name), requested \(cost.space)")
    }
    check("--seed", seed.map(UInt64.init), state.options.seed)
    check("--population", population, state.options.populationSize)
    check("--children", children, state.options.childrenPerGeneration)

    if let costModel = state.costModel {
      check("--batch-size", cost.requestedBatchSize, costModel.batchSize)
      check("--threads", cost.threadOptions.requestedThreads, costModel.threads)
      if noProfile && state.costsAreMeasured == true {
        conflicts.append("--no-profile: the search priced its candidates with a measured profile")
      }
      if hasConstraintFlags, try constraints(costModel: costModel, space: state.space) != state.constraints {
        conflicts.append("the constraint flags give other limits than the recorded ones (\(state.constraints))")
      }
      cost.requestedBatchSize = costModel.batchSize
      cost.threadOptions.requestedThreads = costModel.threads
    }
    if let recorded = state.proxySettings {
      check("--proxy", proxy?.rawValue, recorded.proxy.rawValue)
      check("--dataset", proxyImages.requestedDataset, recorded.dataset)
      check("--proxy-batch", proxyImages.requestedProxyBatch, recorded.batch)
      check("--proxy-seed", proxyImages.requestedProxySeed.map(UInt64.init), recorded.seed)
      check("--short-training-images", proxyImages.shortTrainingImages, recorded.shortTrainingImages)
      check("--short-training-validation", proxyImages.shortTrainingValidation, recorded.shortTrainingValidation)
      check("--short-training-epochs", proxyImages.requestedShortTrainingEpochs, recorded.shortTrainingEpochs)
      if let groundTruth, recorded.proxy == .predictor,
        try fittedPredictor(space: state.space) != recorded.predictor
      {
        conflicts.append("--ground-truth \(groundTruth.prefix(200)): fits another predictor than the recorded one")
      }
      if groundTruth != nil && recorded.proxy != .predictor {
        conflicts.append("--ground-truth: the search scored with the \(recorded.proxy.rawValue) proxy")
      }
      proxy = recorded.proxy
      proxyImages.requestedDataset = recorded.dataset
      proxyImages.requestedProxyBatch = recorded.batch
      proxyImages.requestedProxySeed = Int(recorded.seed)
      proxyImages.shortTrainingImages = recorded.shortTrainingImages
      proxyImages.shortTrainingValidation = recorded.shortTrainingValidation
      proxyImages.requestedShortTrainingEpochs = recorded.shortTrainingEpochs
    }
    guard conflicts.isEmpty else {
      throw ValidationError(
        "--resume continues the recorded search (only --generations may change); these flags contradict it: "
          + conflicts.joined(separator: "; "))
    }
    if state.costModel == nil || state.proxySettings == nil {
      Terminal.status(
        "note: this state was written by an older version and does not record its cost model and proxy; the flags "
          + "given now are used, and must be those the search started with")
    }
    if trainBest > 0 && state.costsAreMeasured == false {
      throw ValidationError(
        "--train-best compares measured costs with predicted ones; this search priced its candidates with the analytic model (--no-profile)")
    }
    if let generations {
      guard generations >= state.generation else {
        throw ValidationError("--generations \(generations): the search has already run \(state.generation) generations")
      }
      state.options.generations = generations
    }
    let proxyName = state.proxySettings.map { " with the \($0.proxy.rawValue) proxy" } ?? ""
    let costs = state.costModel.map {
      ", costs from the recorded \(state.costsAreMeasured == true ? "profile" : "analytic model") (batch \($0.batchSize), \($0.threads) thread(s))"
    } ?? ""
    Terminal.status("resuming at generation \(state.generation)/\(state.options.generations)\(proxyName)\(costs)")
  }
}
