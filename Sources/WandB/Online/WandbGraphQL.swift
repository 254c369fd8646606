import Shared

/// The GraphQL operations the online client sends, with wandb-core's operation names,
/// variable names and selections (`core/api/graphql/*.graphql`; the artifact inputs in the
/// 0.31 `$input` shape that the reference captured). Whitespace is not significant.
public struct WandbGraphQLDocument: Sendable, Equatable {
    public let operationName: String
    public let query: String

    /// `UpsertBucket`: create or resume a run (reference §1.3). Note the input renames
    /// `project`→`modelName`, `entity`→`entityName`, `program`→`jobProgram`, `repo`→`jobRepo`.
    public static let upsertBucket = WandbGraphQLDocument(operationName: "UpsertBucket", query: """
        mutation UpsertBucket($id: String, $name: String, $project: String, $entity: String, $groupName: String, \
        $description: String, $displayName: String, $notes: String, $commit: String, $config: JSONString, \
        $host: String, $debug: Boolean, $program: String, $repo: String, $jobType: String, $state: String, \
        $sweep: String, $tags: [String!], $summaryMetrics: JSONString) { upsertBucket(input: {id: $id, \
        name: $name, groupName: $groupName, modelName: $project, entityName: $entity, description: $description, \
        displayName: $displayName, notes: $notes, config: $config, commit: $commit, host: $host, debug: $debug, \
        jobProgram: $program, jobRepo: $repo, jobType: $jobType, state: $state, sweep: $sweep, tags: $tags, \
        summaryMetrics: $summaryMetrics}) { bucket { id name displayName description config sweepName \
        project { id name entity { id name } } historyLineCount } inserted } }
        """)

    /// The variable names of ``upsertBucket``, in declaration order.
    public static let upsertBucketVariables = [
        "id", "name", "project", "entity", "groupName", "description", "displayName", "notes", "commit", "config",
        "host", "debug", "program", "repo", "jobType", "state", "sweep", "tags", "summaryMetrics",
    ]

    /// `Viewer`: who the key belongs to (and its default entity).
    public static let viewer = WandbGraphQLDocument(operationName: "Viewer", query: """
        query Viewer { viewer { id entity username email flags teams { edges { node { name } } } } }
        """)

    /// `CreateRunFiles`: signed upload URLs for run files.
    public static let createRunFiles = WandbGraphQLDocument(operationName: "CreateRunFiles", query: """
        mutation CreateRunFiles($entity: String!, $project: String!, $run: String!, $files: [String!]!) { \
        createRunFiles(input: {entityName: $entity, projectName: $project, runName: $run, files: $files}) { \
        runID uploadHeaders files { name uploadUrl } } }
        """)

    /// `CreateArtifact` with the whole `CreateArtifactInput` as `$input` (0.31 capture).
    public static let createArtifact = WandbGraphQLDocument(operationName: "CreateArtifact", query: """
        mutation CreateArtifact($input: CreateArtifactInput!) { createArtifact(input: $input) { \
        artifact { id state artifactSequence { latestArtifact { id } } } } }
        """)

    public static let createArtifactManifest = WandbGraphQLDocument(operationName: "CreateArtifactManifest", query: """
        mutation CreateArtifactManifest($artifactID: ID!, $baseArtifactID: ID, $name: String!, $digest: String!, \
        $entityName: String!, $projectName: String!, $runName: String!, $manifestType: ArtifactManifestType!, \
        $includeUpload: Boolean!) { createArtifactManifest(input: {artifactID: $artifactID, \
        baseArtifactID: $baseArtifactID, name: $name, digest: $digest, entityName: $entityName, \
        projectName: $projectName, runName: $runName, type: $manifestType}) { artifactManifest { id \
        file { id uploadUrl @include(if: $includeUpload) uploadHeaders @include(if: $includeUpload) } } } }
        """)

    /// `CreateArtifactFiles` with `$input: CreateArtifactFilesInput!` (0.31 shape).
    public static let createArtifactFiles = WandbGraphQLDocument(operationName: "CreateArtifactFiles", query: """
        mutation CreateArtifactFiles($input: CreateArtifactFilesInput!) { createArtifactFiles(input: $input) { \
        files { edges { node { storagePath uploadUrl uploadHeaders uploadMultipartUrls { uploadID \
        uploadUrlParts { partNumber uploadUrl } } artifact { id } } } } } }
        """)

    public static let completeMultipartUploadArtifact = WandbGraphQLDocument(
        operationName: "CompleteMultipartUploadArtifact", query: """
        mutation CompleteMultipartUploadArtifact($completeMultipartAction: CompleteMultipartAction!, \
        $completedParts: [UploadPartsInput!]!, $artifactID: ID!, $storagePath: String!, $uploadID: String!) { \
        completeMultipartUploadArtifact(input: {completeMultipartAction: $completeMultipartAction, \
        completedParts: $completedParts, artifactID: $artifactID, storagePath: $storagePath, \
        uploadID: $uploadID}) { digest } }
        """)

    public static let commitArtifact = WandbGraphQLDocument(operationName: "CommitArtifact", query: """
        mutation CommitArtifact($artifactID: ID!) { commitArtifact(input: {artifactID: $artifactID}) { \
        artifact { id digest } } }
        """)

    /// The request body: `{"query":…,"variables":{…},"operationName":…}` (genqlient's order),
    /// variables in the given order; without variables the member is left out, as genqlient does.
    func body(variables: [(String, JSONValue)]) -> [UInt8] {
        var members = [("query", WandbValue.quote(query))]
        if !variables.isEmpty { members.append(("variables", WandbJSON.orderedObject(variables))) }
        members.append(("operationName", WandbValue.quote(operationName)))
        return Array(WandbJSON.orderedObject(members).utf8)
    }
}
