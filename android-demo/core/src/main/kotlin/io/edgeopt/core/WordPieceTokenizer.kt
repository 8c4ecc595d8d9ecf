package io.edgeopt.core

import org.json.JSONArray
import org.json.JSONException
import org.json.JSONObject
import java.text.Normalizer

private const val PAD_TOKEN = "[PAD]"

/** One tokenized text, padded or truncated to `maxSeqLen`. */
class Encoding(val inputIds: LongArray, val attentionMask: LongArray, val truncated: Boolean) {
    /** Number of real (non-padding) tokens. */
    val length: Int get() = attentionMask.count { it == 1L }
}

/**
 * Checks one input text as the Python runtime's `clean_text` does, and repairs invalid UTF-16.
 *
 * @param index position in a batch, named in the message.
 * @return the text with each lone surrogate replaced by U+FFFD (a valid pair is kept).
 * @throws InputError the text is empty or whitespace only.
 */
fun cleanText(text: String, index: Int? = null): String {
    if (PyCompat.strip(text).isEmpty()) {
        throw InputError("${index?.let { "texts[$it]: " } ?: ""}text is empty or whitespace only; pass at least one word")
    }
    val out = StringBuilder(text.length)
    var i = 0
    while (i < text.length) {
        val c = text[i]
        when {
            c.isHighSurrogate() && i + 1 < text.length && text[i + 1].isLowSurrogate() -> { out.append(c).append(text[i + 1]); i++ }
            c.isSurrogate() -> out.append('\uFFFD')
            else -> out.append(c)
        }
        i++
    }
    return out.toString()
}

/** Hugging Face `tokenizers`' BertNormalizer, step for step (clean, CJK spacing, accents, lower case). */
internal class BertNormalizer(
    private val cleanText: Boolean,
    private val handleChineseChars: Boolean,
    private val stripAccents: Boolean,
    private val lowercase: Boolean,
) {
    fun normalize(text: String): String {
        var cps = text.codePoints().toArray()
        if (cleanText) {
            cps = cps.filter { !(it == 0 || it == 0xFFFD || isControl(it)) }.map { if (isWhitespace(it)) ' '.code else it }.toIntArray()
        }
        if (handleChineseChars) {
            cps = cps.flatMap { if (isChineseChar(it)) listOf(' '.code, it, ' '.code) else listOf(it) }.toIntArray()
        }
        var s = String(cps, 0, cps.size)
        if (stripAccents) {
            s = Normalizer.normalize(s, Normalizer.Form.NFD).codePoints()
                .filter { Character.getType(it) != Character.NON_SPACING_MARK.toInt() }
                .toArray().let { String(it, 0, it.size) }
        }
        if (lowercase) {
            // Per character, like Rust's char::to_lowercase: no final-sigma rule (String.lowercase() has one).
            val sb = StringBuilder(s.length)
            s.codePoints().forEach { if (it == 0x130) sb.append("i\u0307") else sb.appendCodePoint(Character.toLowerCase(it)) }
            s = sb.toString()
        }
        return s
    }

    companion object {
        /** Rust's `char::is_whitespace` (the Unicode White_Space property). */
        fun isWhitespace(cp: Int): Boolean = when (cp) {
            in 0x09..0x0D, 0x20, 0x85, 0xA0, 0x1680, in 0x2000..0x200A, 0x2028, 0x2029, 0x202F, 0x205F, 0x3000 -> true
            else -> false
        }

        /**
         * Categories Cc, Cf, Cs, Co, except tab, newline and carriage return (counted as whitespace). Unassigned
         * code points (Cn) are kept, as tokenizers does.
         */
        fun isControl(cp: Int): Boolean {
            if (cp == 0x09 || cp == 0x0A || cp == 0x0D) return false
            return when (Character.getType(cp).toByte()) {
                Character.CONTROL, Character.FORMAT, Character.SURROGATE, Character.PRIVATE_USE -> true
                else -> false
            }
        }

        /** The CJK ideograph blocks BERT pads with spaces (the ranges of the original BERT code). */
        fun isChineseChar(cp: Int): Boolean =
            cp in 0x4E00..0x9FFF || cp in 0x3400..0x4DBF || cp in 0x20000..0x2A6DF || cp in 0x2A700..0x2B73F ||
                cp in 0x2B740..0x2B81F || cp in 0x2B920..0x2CEAF || cp in 0xF900..0xFAFF || cp in 0x2F800..0x2FA1F

        /** ASCII punctuation or a Unicode P* category: BertPreTokenizer makes each one a token of its own. */
        fun isPunctuation(cp: Int): Boolean {
            if (cp in 33..47 || cp in 58..64 || cp in 91..96 || cp in 123..126) return true
            return when (Character.getType(cp).toByte()) {
                Character.CONNECTOR_PUNCTUATION, Character.DASH_PUNCTUATION, Character.START_PUNCTUATION,
                Character.END_PUNCTUATION, Character.INITIAL_QUOTE_PUNCTUATION, Character.FINAL_QUOTE_PUNCTUATION,
                Character.OTHER_PUNCTUATION -> true
                else -> false
            }
        }
    }
}

private data class AddedToken(val content: String, val id: Int, val normalized: Boolean)

/**
 * A BERT WordPiece tokenizer read from a Hugging Face `tokenizer.json`, giving exactly the ids of the Python
 * runtime's `TextTokenizer`: added (special) tokens matched first, then BertNormalizer, BertPreTokenizer,
 * WordPiece, the post-processor's `[CLS]`/`[SEP]`, right truncation to [maxSeqLen] and `[PAD]` padding.
 */
class WordPieceTokenizer private constructor(
    private val vocab: Map<String, Int>,
    private val unkId: Int,
    private val prefix: String,
    private val maxCharsPerWord: Int,
    private val normalizer: BertNormalizer?,
    private val addedTokens: List<AddedToken>,
    private val prefixIds: List<Long>,
    private val suffixIds: List<Long>,
    /** Length every encoding is truncated or padded to. */
    val maxSeqLen: Int,
    /** Id of `[PAD]`. */
    val padId: Int,
) {
    /** Tokenizes one text (checked with [cleanText]). @throws InputError for an empty or blank text. */
    fun encode(text: String): Encoding = encodeClean(cleanText(text))

    /** Tokenizes texts; a bad one is named by its index. @throws InputError */
    fun encodeBatch(texts: List<String>): List<Encoding> {
        if (texts.isEmpty()) throw InputError("texts is empty; pass at least one text")
        return texts.mapIndexed { i, t -> cleanText(t, i) }.map(::encodeClean)
    }

    /** WordPiece ids of [text] without special tokens, truncation or padding. */
    fun contentIds(text: String): List<Int> {
        val ids = ArrayList<Int>()
        for ((piece, token) in split(text, addedTokens.filter { !it.normalized })) {
            if (token != null) { ids += token.id; continue }
            val normalized = normalizer?.normalize(piece) ?: piece
            for ((inner, innerToken) in split(normalized, addedTokens.filter { it.normalized })) {
                if (innerToken != null) ids += innerToken.id else preTokenize(inner).forEach { wordPiece(it, ids) }
            }
        }
        return ids
    }

    private fun encodeClean(text: String): Encoding {
        val content = contentIds(text)
        val budget = maxOf(0, maxSeqLen - prefixIds.size - suffixIds.size)
        val kept = content.take(budget).map { it.toLong() }
        val ids = LongArray(maxSeqLen) { padId.toLong() }
        val mask = LongArray(maxSeqLen)
        (prefixIds + kept + suffixIds).take(maxSeqLen).forEachIndexed { i, id -> ids[i] = id; mask[i] = 1 }
        return Encoding(ids, mask, content.size > budget)
    }

    /** Splits [text] around the added tokens, leftmost-longest match first (as `tokenizers` does). */
    private fun split(text: String, tokens: List<AddedToken>): List<Pair<String, AddedToken?>> {
        if (tokens.isEmpty()) return listOf(text to null)
        val out = ArrayList<Pair<String, AddedToken?>>()
        var start = 0
        var i = 0
        while (i < text.length) {
            val match = tokens.filter { text.startsWith(it.content, i) }.maxByOrNull { it.content.length }
            if (match == null) { i++; continue }
            if (i > start) out += text.substring(start, i) to null
            out += match.content to match
            i += match.content.length
            start = i
        }
        if (start < text.length) out += text.substring(start) to null
        return out
    }

    /** BertPreTokenizer: split on whitespace (dropped), then isolate each punctuation character. */
    private fun preTokenize(text: String): List<String> {
        val words = ArrayList<String>()
        val current = StringBuilder()
        fun flush() { if (current.isNotEmpty()) { words += current.toString(); current.setLength(0) } }
        text.codePoints().forEach { cp ->
            when {
                BertNormalizer.isWhitespace(cp) -> flush()
                BertNormalizer.isPunctuation(cp) -> { flush(); words += String(Character.toChars(cp)) }
                else -> current.appendCodePoint(cp)
            }
        }
        flush()
        return words
    }

    /** Greedy longest-match-first WordPiece; a word with an unknown part becomes one `[UNK]`. */
    private fun wordPiece(word: String, out: MutableList<Int>) {
        val cps = word.codePoints().toArray()
        if (cps.size > maxCharsPerWord) { out += unkId; return }
        val pieces = ArrayList<Int>()
        var start = 0
        while (start < cps.size) {
            var end = cps.size
            var found: Int? = null
            while (start < end) {
                val sub = String(cps, start, end - start).let { if (start > 0) prefix + it else it }
                found = vocab[sub]
                if (found != null) break
                end--
            }
            if (found == null) { out += unkId; return }
            pieces += found
            start = end
        }
        out += pieces
    }

    companion object {
        /**
         * Reads a `tokenizer.json`.
         *
         * @param source where it came from, for messages.
         * @throws BundleInvalid the file is not JSON, is not a BERT WordPiece tokenizer, or has no `[PAD]`.
         */
        fun fromJson(json: String, maxSeqLen: Int, source: String = "tokenizer.json"): WordPieceTokenizer {
            val fix = "rebuild the bundle with a BERT WordPiece tokenizer"
            val spec = try {
                JSONObject(json)
            } catch (e: JSONException) {
                throw BundleInvalid("$source is not a valid tokenizers file (${e.message}); rebuild the bundle", e)
            }
            val model = spec.optJSONObject("model") ?: throw BundleInvalid("$source has no 'model'; $fix")
            if (model.optString("type") != "WordPiece") {
                throw BundleInvalid("$source has a ${model.optString("type").ifEmpty { "missing" }} model, not WordPiece; $fix")
            }
            val vocabJson = model.getJSONObject("vocab")
            val vocab = HashMap<String, Int>(vocabJson.length() * 2)
            vocabJson.keys().forEach { vocab[it.toString()] = vocabJson.getInt(it.toString()) }
            val added = spec.optJSONArray("added_tokens") ?: JSONArray()
            val addedTokens = (0 until added.length()).map { added.getJSONObject(it) }.map { t ->
                if (t.optBoolean("lstrip") || t.optBoolean("rstrip") || t.optBoolean("single_word")) {
                    throw BundleInvalid("$source: added token '${t.getString("content")}' uses lstrip/rstrip/single_word, which this tokenizer does not support; $fix")
                }
                AddedToken(t.getString("content"), t.getInt("id"), t.optBoolean("normalized", true))
            }
            val unk = model.optString("unk_token", "[UNK]")
            val unkId = vocab[unk] ?: throw BundleInvalid("$source: unk_token '$unk' is not in the vocabulary; $fix")
            val padId = vocab[PAD_TOKEN] ?: addedTokens.firstOrNull { it.content == PAD_TOKEN }?.id
                ?: throw BundleInvalid("$source has no $PAD_TOKEN token; $fix")
            val (prefixIds, suffixIds) = template(spec.opt("post_processor"), source, fix)
            return WordPieceTokenizer(
                vocab = vocab,
                unkId = unkId,
                prefix = model.optString("continuing_subword_prefix", "##"),
                maxCharsPerWord = model.optInt("max_input_chars_per_word", 100),
                normalizer = normalizer(spec.opt("normalizer"), source, fix),
                addedTokens = addedTokens,
                prefixIds = prefixIds,
                suffixIds = suffixIds,
                maxSeqLen = maxSeqLen,
                padId = padId,
            )
        }

        /** Reads the tokenizer a manifest names, with the manifest's `max_seq_len`. */
        fun fromBundle(bundle: BundleFiles, manifest: Manifest): WordPieceTokenizer {
            checkSafeName(bundle, manifest.tokenizerFile)
            val source = "${bundle.location}/${manifest.tokenizerFile}"
            val text = bundle.open(manifest.tokenizerFile)?.use { it.readBytes().toString(Charsets.UTF_8) }
                ?: throw BundleInvalid("$source is missing; rebuild or re-copy the bundle")
            return fromJson(text, manifest.maxSeqLen, source)
        }

        private fun normalizer(spec: Any?, source: String, fix: String): BertNormalizer? {
            if (spec == null || spec == JSONObject.NULL) return null
            val n = spec as JSONObject
            if (n.optString("type") != "BertNormalizer") {
                throw BundleInvalid("$source has a ${n.optString("type")} normalizer, not BertNormalizer; $fix")
            }
            val lowercase = n.optBoolean("lowercase", true)
            // strip_accents null means "same as lowercase", as in tokenizers.
            val strip = if (n.isNull("strip_accents")) lowercase else n.getBoolean("strip_accents")
            return BertNormalizer(n.optBoolean("clean_text", true), n.optBoolean("handle_chinese_chars", true), strip, lowercase)
        }

        /** The special ids the post-processor puts before and after a single sequence. */
        private fun template(spec: Any?, source: String, fix: String): Pair<List<Long>, List<Long>> {
            if (spec == null || spec == JSONObject.NULL) return emptyList<Long>() to emptyList()
            val p = spec as JSONObject
            return when (p.optString("type")) {
                "BertProcessing", "RobertaProcessing" ->
                    listOf(p.getJSONArray("cls").getLong(1)) to listOf(p.getJSONArray("sep").getLong(1))
                "TemplateProcessing" -> {
                    val specials = p.getJSONObject("special_tokens")
                    val before = ArrayList<Long>()
                    val after = ArrayList<Long>()
                    var seen = false
                    val single = p.getJSONArray("single")
                    for (i in 0 until single.length()) {
                        val item = single.getJSONObject(i)
                        val special = item.optJSONObject("SpecialToken")
                        if (special == null) { seen = true; continue }
                        val ids = specials.getJSONObject(special.getString("id")).getJSONArray("ids")
                        (0 until ids.length()).forEach { (if (seen) after else before) += ids.getLong(it) }
                    }
                    before to after
                }
                else -> throw BundleInvalid("$source has a ${p.optString("type")} post-processor; $fix")
            }
        }
    }
}
