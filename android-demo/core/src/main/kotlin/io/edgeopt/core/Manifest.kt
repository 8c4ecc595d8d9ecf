package io.edgeopt.core

import org.json.JSONArray
import org.json.JSONException
import org.json.JSONObject
import java.io.File
import java.io.InputStream
import java.security.MessageDigest

/** Manifest schema versions this core reads (the Python runtime's `SUPPORTED_SCHEMA_VERSIONS`). */
val SUPPORTED_SCHEMA_VERSIONS: Set<Int> = setOf(2)
const val MANIFEST_NAME = "manifest.json"
const val TASK_TEXT_CLASSIFICATION = "text-classification"
const val TASK_EMBED = "embed"

/** How an `embed` bundle's teacher pooled its token states (the runtime's `POOLINGS`). */
val POOLINGS: List<String> = listOf("mean", "cls", "max")
private val FINGERPRINT_SUFFIXES = listOf(".onnx", ".tflite", ".json")
private val HEX64 = Regex("^[0-9a-f]{64}$")
private const val FIX = "rebuild or re-copy the bundle"
private const val EMPTY_LABELS = "an empty list (an embed bundle has no labels)"

/** One model input or output; a string dimension (`"batch"`) is dynamic. */
data class TensorSpec(val name: String, val shape: List<Any>, val dtype: List<String>)

/** Affine quantization of an integer output: `real = scale * (q - zeroPoint)`. */
data class Quantization(val scale: Double, val zeroPoint: Int)

/** One model file of the bundle. */
data class Artifact(
    val format: String,
    val precision: String,
    val outputDtype: String = "float32",
    val outputQuantization: Quantization? = null,
)

/**
 * What an `embed` bundle's vectors are: the manifest's top-level `dim` (width of the `embedding` output),
 * `pooling` (how the teacher pooled, one of [POOLINGS]; informative, part of the fingerprint) and `normalized`
 * (whether the runtime returns unit vectors).
 */
data class EmbeddingSpec(val dim: Int, val pooling: String, val normalized: Boolean = true)

/** Size and SHA-256 of one bundle file. */
data class FileEntry(val sha256: String, val bytes: Long)

/** A parsed `manifest.json` (schema in runtime/README.md); [raw] keeps every key, unknown ones included. */
data class Manifest(
    val schemaVersion: Int,
    val task: String,
    val labels: List<String>,
    val maxSeqLen: Int,
    val fingerprint: String,
    val tokenizerFile: String,
    val inputs: List<TensorSpec>,
    val outputs: List<TensorSpec>,
    val artifacts: Map<String, Artifact>,
    val files: Map<String, FileEntry>,
    val createdAt: String,
    val raw: JSONObject,
    /** The vectors of an `embed` bundle; null for a classifier. */
    val embedding: EmbeddingSpec? = null,
) {
    /** The first artifact in [format] (`"onnx"` or `"tflite"`), in manifest order, or null. */
    fun artifactFor(format: String): Pair<String, Artifact>? =
        artifacts.entries.firstOrNull { it.value.format == format }?.toPair()
}

/**
 * Read access to the files of a bundle: a directory here, the app's assets on the phone.
 * Names are bundle-relative and already checked by [checkSafeName].
 */
interface BundleFiles {
    /** Where the bundle lives, for messages. */
    val location: String

    /** The file's bytes, or null when it does not exist. */
    fun open(name: String): InputStream?

    /** A message when [name] resolves outside the bundle (a symbolic link), else null. */
    fun escapes(name: String): String? = null
}

/** A bundle in a directory of the file system. */
class DirectoryBundle(val dir: File) : BundleFiles {
    override val location: String get() = dir.path

    override fun open(name: String): InputStream? = File(dir, name).takeIf { it.isFile }?.inputStream()

    override fun escapes(name: String): String? {
        val root = dir.canonicalFile
        val target = File(dir, name).canonicalFile
        return if (target.toPath().startsWith(root.toPath())) null else "resolves to $target, outside the bundle directory $root (a symbolic link?)"
    }
}

/** Rejects empty, absolute, `..` and backslash names, which could reach outside the bundle. */
fun checkSafeName(bundle: BundleFiles, name: String) {
    val where = "${bundle.location}/$MANIFEST_NAME"
    if (name.isEmpty()) throw BundleInvalid("$where: file name '' is empty; $FIX")
    if (name.startsWith("/") || Regex("^[A-Za-z]:").containsMatchIn(name)) {
        throw BundleInvalid("$where: file name '$name' is absolute; bundle file names must be relative; $FIX")
    }
    if ('\\' in name || name.split('/').contains("..")) {
        throw BundleInvalid("$where: file name '$name' contains '..' or a backslash and could point outside the bundle; $FIX")
    }
    bundle.escapes(name)?.let { throw BundleInvalid("$where: file '$name' $it; $FIX") }
}

/**
 * The fingerprint of a manifest (the Python runtime's `compute_fingerprint`): SHA-256 over every field that changes
 * an answer (task, labels in order, max_seq_len, tokenizer, inputs, outputs, artifacts in manifest order with their
 * quantization, and the hashes of the `.onnx`, `.tflite` and `.json` files), written as the compact ASCII JSON
 * document runtime/README.md specifies. An `embed` bundle adds `["embedding", [dim, pooling, normalized]]` after
 * the outputs; a classifier's document has no such element. [Manifest.fingerprint] itself is not part of it.
 */
fun computeFingerprint(m: Manifest): String {
    fun sha(name: String): String = m.files[name]?.sha256 ?: ""
    fun tensors(specs: List<TensorSpec>): List<Any?> = specs.map { listOf(it.name, it.shape, it.dtype) }
    val artifacts = m.artifacts.map { (name, a) ->
        listOf(name, a.format, a.precision, a.outputDtype, a.outputQuantization?.let { listOf(it.scale, it.zeroPoint) }, sha(name))
    }
    val files = m.files.keys
        .filter { it != MANIFEST_NAME && FINGERPRINT_SUFFIXES.any(it::endsWith) }
        .sortedWith(PyCompat.codePointOrder)
        .map { listOf(it, sha(it)) }
    val spec = listOf(
        "edgeopt-fingerprint", 2,
        listOf("task", m.task), listOf("labels", m.labels), listOf("max_seq_len", m.maxSeqLen),
        listOf("tokenizer", m.tokenizerFile, sha(m.tokenizerFile)),
        listOf("inputs", tensors(m.inputs)), listOf("outputs", tensors(m.outputs)),
    ) + listOfNotNull(m.embedding?.let { listOf("embedding", listOf(it.dim, it.pooling, it.normalized)) }) + listOf(
        listOf("artifacts", artifacts), listOf("files", files),
    )
    return PyCompat.sha256Hex(PyCompat.compactJson(spec).toByteArray(Charsets.US_ASCII))
}

/** Parses and type-checks `manifest.json` only (hashes are checked by [verifyBundle]). */
fun readManifest(bundle: BundleFiles): Manifest {
    val path = "${bundle.location}/$MANIFEST_NAME"
    val text = bundle.open(MANIFEST_NAME)?.use { it.readBytes().toString(Charsets.UTF_8) }
        ?: throw BundleInvalid("$path is missing; ${bundle.location} is not an edgeopt bundle, or it was copied incompletely")
    val raw = try {
        JSONObject(text)
    } catch (e: JSONException) {
        throw BundleInvalid("$path is not a valid JSON object (${e.message}); $FIX", e)
    }
    val version = raw.opt("schema_version")
    if (version !is Int || version !in SUPPORTED_SCHEMA_VERSIONS) {
        val shown = if (version == null) "missing" else version.toString()
        throw BundleInvalid(
            "$path: schema_version $shown is not supported; this app reads schema_version " +
                "${SUPPORTED_SCHEMA_VERSIONS.joinToString()}; update the app or rebuild the bundle with a matching edgeopt",
        )
    }
    return ManifestReader(path).read(raw, version)
}

/** Typed access to the manifest JSON that turns every mismatch into one [BundleInvalid] line. */
private class ManifestReader(val path: String) {
    fun fail(key: String, want: String, got: Any?): BundleInvalid {
        val shown = got.toString().let { if (it.length <= 60) it else got?.javaClass?.simpleName ?: "null" }
        return BundleInvalid("$path: key '$key' must be $want, got $shown; $FIX")
    }

    fun value(obj: JSONObject, key: String, where: String): Any {
        val full = if (where.isEmpty()) key else "$where.$key"
        if (!obj.has(key)) throw BundleInvalid("$path: required key '$full' is missing; $FIX")
        return obj.get(key)
    }

    fun string(obj: JSONObject, key: String, where: String = ""): String =
        value(obj, key, where) as? String ?: throw fail(key, "a string", obj.get(key))

    fun int(obj: JSONObject, key: String, want: String, where: String = ""): Long = when (val v = value(obj, key, where)) {
        is Int -> v.toLong()
        is Long -> v
        else -> throw fail(if (where.isEmpty()) key else "$where.$key", want, v)
    }

    fun obj(obj: JSONObject, key: String, where: String = ""): JSONObject =
        value(obj, key, where) as? JSONObject ?: throw fail(key, "an object", obj.get(key))

    fun array(obj: JSONObject, key: String): JSONArray = value(obj, key, "") as? JSONArray ?: throw fail(key, "a list", obj.get(key))

    fun tensor(o: Any, where: String): TensorSpec {
        val t = o as? JSONObject ?: throw fail(where, "an object", o)
        val shape = t.optJSONArray("shape") ?: throw fail("$where.shape", "a list", t.opt("shape"))
        val dims = (0 until shape.length()).map { shape.get(it) }
        if (!dims.all { it is Int || it is Long || it is String }) throw fail("$where.shape", "a list of ints and strings", shape)
        val dtype = when (val d = t.opt("dtype")) {
            null -> emptyList()
            is String -> listOf(d)
            is JSONArray -> (0 until d.length()).map { d.get(it) as? String ?: throw fail("$where.dtype", "a string or a list of strings", d) }
            else -> throw fail("$where.dtype", "a string or a list of strings", d)
        }
        return TensorSpec(string(t, "name", where), dims, dtype)
    }

    fun artifact(o: Any, where: String): Artifact {
        val a = o as? JSONObject ?: throw fail(where, "an object", o)
        val quant = a.opt("output_quantization")?.takeIf { it != JSONObject.NULL }?.let { q ->
            val qo = q as? JSONObject ?: throw fail("$where.output_quantization", "an object", q)
            val qWhere = "$where.output_quantization"
            val scale = (value(qo, "scale", qWhere) as? Number)?.toDouble()
            if (scale == null || !scale.isFinite() || scale <= 0) throw fail("$qWhere.scale", "a positive number", qo.opt("scale"))
            Quantization(scale, int(qo, "zero_point", "an integer", qWhere).toInt())
        }
        val outputDtype = a.opt("output_dtype") ?: "float32"
        if (outputDtype !in listOf("float32", "int8", "uint8")) throw fail("$where.output_dtype", "'float32', 'int8' or 'uint8'", outputDtype)
        return Artifact(string(a, "format", where), a.opt("precision")?.toString() ?: "", outputDtype as String, quant)
    }

    fun file(o: Any, where: String): FileEntry {
        val f = o as? JSONObject ?: throw fail(where, "an object", o)
        val sha = string(f, "sha256", where)
        if (!HEX64.matches(sha)) throw fail("$where.sha256", "64 lowercase hex characters", sha)
        val size = int(f, "bytes", "a non-negative integer", where)
        if (size < 0) throw fail("$where.bytes", "a non-negative integer", size)
        return FileEntry(sha, size)
    }

    fun read(raw: JSONObject, version: Int): Manifest {
        // The runtime's order of checks: the task decides what the labels must be and whether the embedding keys exist.
        val task = string(raw, "task")
        var embedding: EmbeddingSpec? = null
        val labels: List<Any>
        if (task == TASK_EMBED) {
            val labelsJson = value(raw, "labels", "") as? JSONArray ?: throw fail("labels", EMPTY_LABELS, raw.get("labels"))
            if (labelsJson.length() != 0) throw fail("labels", EMPTY_LABELS, labelsJson)
            labels = emptyList()
            val dim = int(raw, "dim", "a positive integer")
            if (dim < 1 || dim > Int.MAX_VALUE) throw fail("dim", "a positive integer", dim)
            val poolings = "one of ${POOLINGS.joinToString()}"
            val pooling = value(raw, "pooling", "") as? String ?: throw fail("pooling", poolings, raw.get("pooling"))
            if (pooling !in POOLINGS) throw fail("pooling", poolings, pooling)
            val normalized = value(raw, "normalized", "") as? Boolean ?: throw fail("normalized", "true or false", raw.get("normalized"))
            embedding = EmbeddingSpec(dim.toInt(), pooling, normalized)
        } else {
            val labelsJson = array(raw, "labels")
            labels = (0 until labelsJson.length()).map { labelsJson.get(it) }
            if (labels.size < 2 || !labels.all { it is String } || labels.toSet().size != labels.size) {
                throw fail("labels", "a list of at least two distinct strings", labelsJson)
            }
        }
        val maxSeqLen = int(raw, "max_seq_len", "an integer >= 2")
        if (maxSeqLen < 2 || maxSeqLen > Int.MAX_VALUE) throw fail("max_seq_len", "an integer >= 2", maxSeqLen)
        val fingerprint = string(raw, "fingerprint")
        if (!HEX64.matches(fingerprint)) throw fail("fingerprint", "64 lowercase hex characters", fingerprint)
        val tokenizer = obj(raw, "tokenizer")
        val inputs = array(raw, "inputs")
        val outputs = array(raw, "outputs")
        val artifacts = obj(raw, "artifacts")
        val files = obj(raw, "files")
        val createdAt = raw.opt("created_at") ?: ""
        if (createdAt !is String) throw fail("created_at", "an ISO-8601 string", createdAt)
        return Manifest(
            schemaVersion = version,
            task = task,
            labels = labels.map { it as String },
            maxSeqLen = maxSeqLen.toInt(),
            fingerprint = fingerprint,
            tokenizerFile = string(tokenizer, "file", "tokenizer"),
            inputs = (0 until inputs.length()).map { tensor(inputs.get(it), "inputs[$it]") },
            outputs = (0 until outputs.length()).map { tensor(outputs.get(it), "outputs[$it]") },
            artifacts = keys(artifacts).associateWith { artifact(artifacts.get(it), "artifacts.$it") },
            files = keys(files).associateWith { file(files.get(it), "files.$it") },
            createdAt = createdAt,
            raw = raw,
            embedding = embedding,
        )
    }

    fun keys(obj: JSONObject): List<String> = obj.keys().asSequence().map { it.toString() }.toList()
}

/** SHA-256 hex and byte count of a stream, read in 1 MiB chunks. */
fun sha256AndSize(stream: InputStream): Pair<String, Long> {
    val digest = MessageDigest.getInstance("SHA-256")
    val buffer = ByteArray(1 shl 20)
    var total = 0L
    stream.use {
        while (true) {
            val n = it.read(buffer)
            if (n < 0) break
            digest.update(buffer, 0, n)
            total += n
        }
    }
    return digest.digest().joinToString("") { "%02x".format(it) } to total
}

/**
 * Reads the manifest and checks every file it lists (present, inside the bundle, right size and SHA-256), that
 * the tokenizer and every artifact are listed, and that the fingerprint matches the manifest ([computeFingerprint]).
 *
 * @throws BundleInvalid naming the first file that fails, with expected and actual values.
 */
fun verifyBundle(bundle: BundleFiles): Manifest {
    val manifest = readManifest(bundle)
    val where = "${bundle.location}/$MANIFEST_NAME"
    for (name in listOf(manifest.tokenizerFile) + manifest.artifacts.keys) {
        checkSafeName(bundle, name)
        if (name !in manifest.files) throw BundleInvalid("$where: '$name' is used by the bundle but not listed under 'files'; $FIX")
    }
    for ((name, entry) in manifest.files) {
        checkSafeName(bundle, name)
        val path = "${bundle.location}/$name"
        val stream = bundle.open(name) ?: throw BundleInvalid("$path is listed in $MANIFEST_NAME but missing; $FIX")
        val (sha, size) = sha256AndSize(stream)
        if (size != entry.bytes) throw BundleInvalid("$path has $size bytes, the manifest expects ${entry.bytes}; $FIX")
        if (sha != entry.sha256) throw BundleInvalid("$path has sha256 $sha, the manifest expects ${entry.sha256}; $FIX")
    }
    val expected = computeFingerprint(manifest)
    if (manifest.fingerprint != expected) {
        throw BundleInvalid(
            "$where: fingerprint ${manifest.fingerprint} does not match the manifest ($expected): its labels, " +
                "artifacts, inputs or files were changed after the build; $FIX",
        )
    }
    return manifest
}
