package io.edgeopt.core

/** The answer for one text (the Python runtime's `Prediction`). */
data class Prediction(
    val label: String,
    val score: Double,
    /** Softmax probability of every label, in manifest order. */
    val scores: Map<String, Double>,
    /** True when the answer came from the result cache. */
    val cached: Boolean,
    /** Cache lookup + tokenize + inference time (a batch's time divided by its size). */
    val latencyMs: Double,
    /** True when the text had more than `maxSeqLen` tokens and the tail was dropped. */
    val truncated: Boolean,
)

/**
 * A verified bundle ready to classify: tokenizer, a [TextModel] backend and an optional [ResultCache].
 * Build it with [load]. Not thread-safe: use one per thread, or synchronize.
 */
class TextClassifier(
    val manifest: Manifest,
    val tokenizer: WordPieceTokenizer,
    private val model: TextModel,
    val cache: ResultCache? = null,
    private val nanoTime: () -> Long = System::nanoTime,
    monitorWindow: Int = DEFAULT_MONITOR_WINDOW,
) : AutoCloseable {
    private val keyOptions = keyOptions(model.backend, manifest.artifactFor(model.backend)?.first ?: "")

    /** Why the bundle's monitoring reference was ignored (malformed), or null. */
    var monitoringError: InputError? = null
        private set

    /** Every answer (cache hits included) enters its window; see [Monitor] and runtime/README.md "Monitoring". */
    val monitor = Monitor(manifest.labels, MonitorReference.fromManifest(manifest) { monitoringError = it }, monitorWindow)

    /** The last cache failure; the cache is then skipped (a prediction never fails because of the cache). */
    var cacheError: CacheError? = null
        private set

    val labels: List<String> get() = manifest.labels
    val backend: String get() = model.backend

    /** Classifies one text, from the cache when it holds the answer. @throws InputError for an empty text. */
    fun predict(text: String): Prediction = predictClean(listOf(cleanText(text))).single()

    /** Classifies texts; cache misses go to the model in one call. @throws InputError naming the bad text's index. */
    fun predictBatch(texts: List<String>): List<Prediction> {
        if (texts.isEmpty()) throw InputError("texts is empty; pass at least one text")
        return predictClean(texts.mapIndexed { i, t -> cleanText(t, i) })
    }

    /**
     * The cache key of a text for this bundle and backend (equal keys mean equal texts after [cleanText]).
     * @throws InputError the text is invalid, or there is no cache (its secret makes the key).
     */
    fun cacheKey(text: String): String = keyOf(cleanText(text))

    private fun keyOf(cleaned: String): String {
        val secret = cache?.secret ?: throw InputError("this classifier has no result cache; pass one to get cache keys")
        return cacheKey(secret, manifest.fingerprint, cleaned, keyOptions)
    }

    private fun predictClean(texts: List<String>): List<Prediction> {
        val start = nanoTime()
        val useCache = cache != null && cacheError == null
        val keys = if (useCache) texts.map(::keyOf) else emptyList()
        val hits = if (useCache) guard { cache.getMany(keys) } ?: emptyMap() else emptyMap()
        val lookupMs = (nanoTime() - start) / 1e6 / texts.size
        val cached = texts.indices.map { i -> keys.getOrNull(i)?.let { k -> hits[k]?.let { CachedResult.fromJson(it, labels) } } }
        val todo = texts.indices.filter { cached[it] == null }
        val fresh = (if (todo.isEmpty()) emptyList() else run(todo.map { tokenizer.encode(texts[it]) }, start)).iterator()
        val out = texts.indices.map { i ->
            cached[i]?.let { Prediction(it.label, it.score, it.scores, true, lookupMs, it.truncated) } ?: fresh.next()
        }
        out.forEach(monitor::observe)
        if (todo.isNotEmpty() && useCache && cacheError == null) {
            guard {
                cache.putMany(todo.map { i ->
                    val p = out[i]
                    ResultCache.Entry(keys[i], manifest.fingerprint, CachedResult(p.label, p.score, p.scores, p.truncated).toJson(), texts[i])
                })
            }
        }
        return out
    }

    private fun run(encodings: List<Encoding>, start: Long): List<Prediction> {
        val logits = model.run(encodings.map { it.inputIds }, encodings.map { it.attentionMask })
        val classes = classify(logits, labels, encodings.size)
        val latencyMs = (nanoTime() - start) / 1e6 / encodings.size
        return classes.zip(encodings) { c, e -> Prediction(c.label, c.score, c.scores, false, latencyMs, e.truncated) }
    }

    private inline fun <T> guard(block: () -> T): T? = try {
        block()
    } catch (e: CacheError) {
        cacheError = e
        null
    }

    override fun close() {
        model.close()
        cache?.close()
    }

    companion object {
        /**
         * Verifies a bundle, reads its tokenizer and wraps [model]; purges cache entries of other fingerprints.
         *
         * @throws BundleInvalid the bundle fails verification or is not a text classifier.
         */
        fun load(bundle: BundleFiles, model: TextModel, cache: ResultCache? = null): TextClassifier {
            val manifest = verifyBundle(bundle)
            if (manifest.task == TASK_EMBED) {
                throw BundleInvalid("bundle ${bundle.location} has task '$TASK_EMBED', not '$TASK_TEXT_CLASSIFICATION'; embed with it: TextEmbedder.load")
            }
            if (manifest.task != TASK_TEXT_CLASSIFICATION) {
                throw BundleInvalid("bundle ${bundle.location} has task '${manifest.task}'; this app runs '$TASK_TEXT_CLASSIFICATION' only")
            }
            if (manifest.artifactFor(model.backend) == null) {
                throw BundleInvalid("bundle ${bundle.location} has no ${model.backend} model (it has: ${manifest.artifacts.values.map { it.format }.toSortedSet().joinToString()}); use another backend")
            }
            val classifier = TextClassifier(manifest, WordPieceTokenizer.fromBundle(bundle, manifest), model, cache)
            cache?.let { c -> classifier.guard { c.keepOnly(manifest.fingerprint) } }
            return classifier
        }
    }
}
